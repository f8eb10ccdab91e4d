import type { InstanceStatus, Registration } from '../registration.js';

/**
 * Eureka's JSON (`GET /eureka/apps` and `/eureka/apps/delta` with `Accept: application/json`) read
 * into registrations. Pure functions: the HTTP client parses the body, the source applies the result.
 *
 * The format has quirks from its XStream and Jackson codecs: `@enabled`, booleans and timestamps
 * are strings (or numbers, depending on the codec); a single application or instance may come as an
 * object instead of an array; empty metadata is `{"@class":"java.util.Collections$EmptyMap"}`; the
 * overridden status is spelled `overriddenStatus` or `overriddenstatus`.
 */

/** The answer is not a Eureka document at all (HTML error page, truncated body, other JSON). */
export class EurekaFormatError extends Error {}

/** The statuses Eureka knows (`InstanceInfo.InstanceStatus`); Dubbo's DISABLED is not one of them. */
export type EurekaStatus = Exclude<InstanceStatus, 'DISABLED'>;
const STATUSES: ReadonlySet<string> = new Set<EurekaStatus>(['UP', 'DOWN', 'STARTING', 'OUT_OF_SERVICE', 'UNKNOWN']);

/** The `applications` object of an answer, checked only at the top level. */
export type EurekaApplicationsJson = Record<string, unknown>;

/** Something in the document that was skipped; the rest of the document was read. */
export interface EurekaProblem {
  kind: 'eureka-application' | 'eureka-instance';
  detail: string;
  /**
   * Key and status of a skipped instance when they could be read: it is still registered in Eureka,
   * so it still counts in the reconcile hash code.
   */
  key?: string;
  status?: EurekaStatus;
}

export interface EurekaFullRegistry {
  registrations: Registration[];
  problems: EurekaProblem[];
  /** `apps__hashcode`: the server's census of its whole registry. */
  hashCode?: string;
}

export type EurekaDeltaChange = { action: 'ADDED' | 'MODIFIED'; registration: Registration } | { action: 'DELETED'; key: string };

export interface EurekaDelta {
  changes: EurekaDeltaChange[];
  problems: EurekaProblem[];
  /** `apps__hashcode` of the server's whole registry (not of the delta) when it answered. */
  hashCode?: string;
}

/** Parses an answer body; anything but a JSON object with an `applications` object is an error. */
export function parseApplicationsBody(text: string): EurekaApplicationsJson {
  if (/^\s*</.test(text)) throw new EurekaFormatError('answer is HTML or XML, not JSON');
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new EurekaFormatError(`answer is not JSON (${(error as Error).message})`);
  }
  const applications = isObject(document) ? document['applications'] : undefined;
  if (!isObject(applications)) throw new EurekaFormatError('answer has no "applications" object');
  return applications;
}

/** Reads a full registry (`/apps`). An instance that cannot be read is skipped and reported. */
export function readFullRegistry(applications: EurekaApplicationsJson, source: string): EurekaFullRegistry {
  const registrations = new Map<string, Registration>();
  const problems: EurekaProblem[] = [];
  for (const { appName, instance } of instancesOf(applications, problems)) {
    const read = readInstance(instance, appName, source);
    if ('registration' in read) registrations.set(read.registration.key, read.registration);
    else problems.push(read.problem);
  }
  return { registrations: [...registrations.values()], problems, ...hashCodeOf(applications) };
}

/**
 * Reads a delta (`/apps/delta`): the instances changed in the server's last few minutes, each with
 * its `actionType`. A DELETED instance needs only its key; an unknown action is a problem.
 */
export function readDelta(applications: EurekaApplicationsJson, source: string): EurekaDelta {
  const changes: EurekaDeltaChange[] = [];
  const problems: EurekaProblem[] = [];
  for (const { appName, instance } of instancesOf(applications, problems)) {
    const action = isObject(instance) ? instance['actionType'] : undefined;
    if (action === 'DELETED') {
      const key = isObject(instance) ? keyOf(instance, appName) : undefined;
      if (key) changes.push({ action, key });
      else problems.push({ kind: 'eureka-instance', detail: `${describe(instance, appName)}: DELETED without app or id` });
    } else if (action === 'ADDED' || action === 'MODIFIED') {
      const read = readInstance(instance, appName, source);
      if ('registration' in read) changes.push({ action, registration: read.registration });
      else problems.push(read.problem);
    } else {
      const detail = `${describe(instance, appName)}: unknown actionType ${JSON.stringify(action ?? null)}`;
      problems.push({ kind: 'eureka-instance', detail });
    }
  }
  return { changes, problems, ...hashCodeOf(applications) };
}

/**
 * Eureka's reconcile hash code of a set of instances: `<STATUS>_<count>_` per status present,
 * statuses in ascending order, e.g. `DOWN_1_UP_3_`; the empty registry gives ``.
 *
 * Netflix/eureka `Applications.populateInstanceCountMap` counts every instance of every application
 * into a `TreeMap<String, AtomicInteger>` keyed by `info.getStatus().name()`, and the static
 * `Applications.getReconcileHashCode(TreeMap)` concatenates `key + STATUS_DELIMITER + count +
 * STATUS_DELIMITER` over the entries in the map's order, with `STATUS_DELIMITER = "_"`. The server
 * puts it on full and delta answers alike as `apps__hashcode`, computed over its *whole* registry
 * (`AbstractInstanceRegistry.getApplicationDeltas`: `apps.setAppsHashCode(allApps.getReconcileHashCode())`),
 * and `DiscoveryClient` fetches the full registry when its own copy after a delta does not match.
 * TreeMap orders by `String.compareTo` (UTF-16 units); status names are ASCII, so the default
 * JavaScript sort is the same order.
 */
export function reconcileHashCode(instances: Iterable<{ readonly status: string }>): string {
  const counts = new Map<string, number>();
  for (const { status } of instances) counts.set(status, (counts.get(status) ?? 0) + 1);
  return [...counts.keys()]
    .sort()
    .map((status) => `${status}_${counts.get(status)}_`)
    .join('');
}

/** Eureka's `InstanceStatus.toEnum`: an unknown or missing status is UNKNOWN. */
export function toEurekaStatus(value: unknown): EurekaStatus {
  return typeof value === 'string' && STATUSES.has(value) ? (value as EurekaStatus) : 'UNKNOWN';
}

// ---- internals ----------------------------------------------------------------------------------

type InstanceRead = { registration: Registration } | { problem: EurekaProblem };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Older codecs write a one-element list as the element itself. */
function asList(value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value.trim() === '' ? undefined : value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

function hashCodeOf(applications: EurekaApplicationsJson): { hashCode?: string } {
  const hashCode = applications['apps__hashcode'];
  return typeof hashCode === 'string' ? { hashCode } : {};
}

function* instancesOf(
  applications: EurekaApplicationsJson,
  problems: EurekaProblem[],
): Generator<{ appName: string | undefined; instance: unknown }> {
  for (const application of asList(applications['application'])) {
    if (!isObject(application)) {
      problems.push({ kind: 'eureka-application', detail: `application is ${JSON.stringify(application)?.slice(0, 80)}` });
      continue;
    }
    const appName = text(application['name']);
    for (const instance of asList(application['instance'])) yield { appName, instance };
  }
}

/** `InstanceInfo.getId()`: the instanceId, else (on AWS) the EC2 instance id, else the host name. */
function idOf(instance: Record<string, unknown>): string | undefined {
  const dataCenter = instance['dataCenterInfo'];
  const dataCenterMetadata = isObject(dataCenter) && isObject(dataCenter['metadata']) ? dataCenter['metadata'] : {};
  return text(instance['instanceId']) ?? text(dataCenterMetadata['instance-id']) ?? text(instance['hostName']);
}

function appOf(instance: Record<string, unknown>, appName: string | undefined): string | undefined {
  // Eureka treats application names case-insensitively and upper-cases them on registration.
  return (text(instance['app']) ?? appName)?.toUpperCase();
}

function keyOf(instance: Record<string, unknown>, appName: string | undefined): string | undefined {
  const app = appOf(instance, appName);
  const id = idOf(instance);
  return app && id ? `${app}/${id}` : undefined;
}

function describe(instance: unknown, appName: string | undefined): string {
  if (!isObject(instance)) return `${appName ?? '?'}/? (${JSON.stringify(instance)?.slice(0, 80)})`;
  return `${appOf(instance, appName) ?? appName ?? '?'}/${idOf(instance) ?? '?'}`;
}

/**
 * `{"$": 8080, "@enabled": "true"}` (number or string `$`), or a bare number from other writers. A
 * port without `@enabled` counts as enabled.
 */
function readPort(value: unknown): { port: number | undefined; enabled: boolean } {
  const raw = isObject(value) ? value['$'] : value;
  const port = typeof raw === 'number' || (typeof raw === 'string' && /^\d+$/.test(raw)) ? Number(raw) : undefined;
  const flag = isObject(value) ? value['@enabled'] : undefined;
  const enabled = flag === undefined || flag === true || flag === 'true';
  return { port: port !== undefined && Number.isInteger(port) && port > 0 && port <= 65_535 ? port : undefined, enabled };
}

function timestampOf(value: unknown): number | undefined {
  const number = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  return typeof number === 'number' && Number.isSafeInteger(number) && number > 0 ? number : undefined;
}

function weightOf(metadata: Record<string, string>): number {
  const weight = metadata['weight'];
  return weight !== undefined && /^\d+$/.test(weight.trim()) ? Number(weight) : 100;
}

function readInstance(instance: unknown, appName: string | undefined, source: string): InstanceRead {
  const bad = (reason: string): InstanceRead => {
    const detail = `${describe(instance, appName)}: ${reason}`;
    const key = isObject(instance) ? keyOf(instance, appName) : undefined;
    if (!key || !isObject(instance)) return { problem: { kind: 'eureka-instance', detail } };
    return { problem: { kind: 'eureka-instance', detail, key, status: toEurekaStatus(instance['status']) } };
  };
  if (!isObject(instance)) return bad('instance is not an object');
  const app = appOf(instance, appName);
  const id = idOf(instance);
  if (!app) return bad('no app name');
  if (!id) return bad('no instanceId or hostName');
  const host = text(instance['ipAddr']);
  if (!host) return bad('no ipAddr');

  // The plain port when it is enabled (InstanceInfo's default), else the secure one.
  const plain = readPort(instance['port']);
  const usePlain = plain.enabled;
  const port = usePlain ? plain.port : readPort(instance['securePort']).port;
  if (port === undefined) return bad(usePlain ? 'no valid port' : 'plain port disabled and no valid securePort');

  const metadata: Record<string, string> = {};
  const declared = instance['metadata'];
  if (declared !== undefined && declared !== null && !isObject(declared)) return bad('metadata is not an object');
  for (const [name, value] of Object.entries(declared ?? {})) {
    if (name.startsWith('@')) continue; // `@class` of the codec's EmptyMap
    const string = typeof value === 'string' ? value : text(value);
    if (string !== undefined) metadata[name] = string;
  }
  // A few facts of the instance, written over metadata keys of the same name: these are Eureka's.
  const dataCenter = instance['dataCenterInfo'];
  const facts: Record<string, string | undefined> = {
    instanceId: id,
    hostName: text(instance['hostName']),
    vipAddress: text(instance['vipAddress']),
    homePageUrl: text(instance['homePageUrl']),
    healthCheckUrl: text(instance['healthCheckUrl']) ?? text(instance['secureHealthCheckUrl']),
    overriddenStatus: text(instance['overriddenStatus']) ?? text(instance['overriddenstatus']),
    dataCenter: isObject(dataCenter) ? text(dataCenter['name']) : undefined,
    secure: String(!usePlain),
  };
  for (const [name, value] of Object.entries(facts)) if (value !== undefined) metadata[name] = value;

  const timestamp = timestampOf(instance['lastUpdatedTimestamp']);
  return {
    registration: {
      key: `${app}/${id}`,
      source,
      sourceKind: 'eureka',
      application: app.toLowerCase(),
      kind: 'http',
      host,
      port,
      status: toEurekaStatus(instance['status']),
      weight: weightOf(metadata),
      services: [],
      metadata,
      ...(timestamp === undefined ? {} : { timestamp }),
    },
  };
}
