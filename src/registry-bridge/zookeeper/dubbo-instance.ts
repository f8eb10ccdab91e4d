import type { DubboServiceRef, Registration } from '../registration.js';
import { serviceKey } from './dubbo-url.js';

/**
 * Dubbo 3 application-level discovery: `/services/<app>/<ip:port>` holds Curator's
 * service-discovery JSON. Spring Cloud Zookeeper writes the same folder with another payload
 * class; the two are told apart by `payload["@class"]`.
 */

export class BadInstanceData extends Error {}

const DUBBO_PAYLOAD = 'org.apache.dubbo.registry.zookeeper.ZookeeperInstance';
const SPRING_PAYLOAD = 'org.springframework.cloud.zookeeper.discovery.ZookeeperInstance';

export interface ParsedInstance {
  registration: Registration;
  /** `dubbo.metadata.revision`, when the instance names one other than `0`. */
  revision?: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses registry JSON, naming what it was when it is not JSON. */
function parseJson(data: Buffer, what: string): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    throw new BadInstanceData(`${what} is not JSON`);
  }
}

function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isRecord(value)) return out;
  for (const [key, v] of Object.entries(value)) {
    if (key.startsWith('@')) continue;
    out[key] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  return out;
}

export function parseInstanceData(source: string, path: string, app: string, data: Buffer | undefined): ParsedInstance {
  if (!data || data.length === 0) throw new BadInstanceData('empty instance node');
  const json = parseJson(data, 'instance data');
  if (!isRecord(json)) throw new BadInstanceData('instance data is not a JSON object');
  const address = json['address'];
  const port = Number(json['port']);
  if (typeof address !== 'string' || address === '') throw new BadInstanceData('instance has no address');
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new BadInstanceData('instance has no valid port');
  const payload = isRecord(json['payload']) ? json['payload'] : {};
  const payloadClass = typeof payload['@class'] === 'string' ? payload['@class'] : '';
  const metadata = stringMap(payload['metadata']);
  const enabled = json['enabled'] !== false;
  const registeredAt = Number(json['registrationTimeUTC']);
  const base = {
    key: path,
    source,
    sourceKind: 'zookeeper' as const,
    application: (typeof json['name'] === 'string' && json['name'] !== '' ? json['name'] : app).toLowerCase(),
    host: address,
    port,
    status: enabled ? ('UP' as const) : ('DISABLED' as const),
    weight: 100,
    services: [] as DubboServiceRef[],
    metadata,
    ...(Number.isFinite(registeredAt) && registeredAt > 0 ? { timestamp: registeredAt } : {}),
  };
  if (payloadClass === SPRING_PAYLOAD) return { registration: { ...base, kind: 'http' } };
  if (payloadClass !== DUBBO_PAYLOAD && payloadClass !== '') {
    throw new BadInstanceData(`unknown payload class ${payloadClass.slice(0, 80)}`);
  }
  const revision = metadata['dubbo.metadata.revision'];
  return {
    registration: { ...base, kind: 'dubbo' },
    ...(revision && revision !== '0' ? { revision } : {}),
  };
}

/**
 * MetadataInfo JSON from `/dubbo/metadata/<app>/<revision>` (written when metadata-type=remote):
 * `{"app","revision","services":{"<key>":{"name","group","version","protocol","params":{"methods"}}}}`.
 */
export function servicesFromMetadataInfo(data: Buffer): DubboServiceRef[] {
  const json = parseJson(data, 'metadata report');
  if (!isRecord(json) || !isRecord(json['services'])) throw new BadInstanceData('metadata report has no services');
  const services: DubboServiceRef[] = [];
  for (const value of Object.values(json['services'])) {
    if (!isRecord(value) || typeof value['name'] !== 'string') continue;
    const params = isRecord(value['params']) ? value['params'] : {};
    const group = typeof value['group'] === 'string' ? value['group'] : '';
    const version = typeof value['version'] === 'string' ? value['version'] : '';
    services.push({
      key: serviceKey(value['name'], group, version),
      interface: value['name'],
      group,
      version,
      protocol: typeof value['protocol'] === 'string' ? value['protocol'] : 'dubbo',
      methods: typeof params['methods'] === 'string' ? params['methods'].split(',').filter(Boolean) : [],
      side: 'provider',
    });
  }
  return services;
}

/**
 * A full service definition from `/dubbo/metadata/<iface>[/<version>][/<group>]/provider/<app>`:
 * `{"parameters":{…,"group","version","methods":"a,b"},"canonicalName","methods":[{"name":…}]}`.
 */
export function serviceFromDefinition(data: Buffer): { methods: string[]; group: string; version: string } {
  const json = parseJson(data, 'service definition');
  if (!isRecord(json)) throw new BadInstanceData('service definition is not a JSON object');
  const parameters = isRecord(json['parameters']) ? json['parameters'] : {};
  const text = (key: string) => (typeof parameters[key] === 'string' ? parameters[key] : '');
  const listed = Array.isArray(json['methods']) ? json['methods'] : [];
  const methods =
    typeof parameters['methods'] === 'string'
      ? parameters['methods'].split(',').filter(Boolean)
      : [...new Set(listed.flatMap((m) => (isRecord(m) && typeof m['name'] === 'string' ? [m['name']] : [])))];
  return { methods, group: text('group'), version: text('version') };
}
