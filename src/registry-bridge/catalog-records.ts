import { z } from 'zod';
import type { ServiceCatalog } from './catalog.js';
import type { Registration } from './registration.js';

/**
 * The catalog topic (compacted): what the replica reading the registries tells the others, one
 * record per key, so that the topic read from its beginning is the catalog as it is now.
 *
 * | key                      | value (JSON)                          | tombstone (null value)      |
 * |--------------------------|---------------------------------------|-----------------------------|
 * | `<source>\0<key>`        | `{"v":1,"registration":{…}}`          | the registration is gone    |
 * | `health\0<source>`       | `{"v":1,"health":{"reachable",…}}`    | the source is read no more  |
 * | `leader`                 | `{"v":1,"leader":{"replica","since"}}`| no replica reads registries |
 *
 * Source ids (`zookeeper:<connect>`, `eureka`) never are `health`, so the first part of a key
 * tells a registration from a health record.
 */

export interface SourceHealth {
  reachable: boolean;
  error?: string;
}

/** Which replica reads the registries for the cluster, since when (ms since the epoch). */
export interface BridgeLeader {
  replica: string;
  since: number;
}

export type CatalogRecord =
  | { type: 'registration'; source: string; key: string; registration: Registration | null }
  | { type: 'health'; source: string; health: SourceHealth | null }
  | { type: 'leader'; leader: BridgeLeader | null };

const SEPARATOR = '\u0000';
const HEALTH = 'health';
const LEADER = 'leader';

const DubboServiceRefSchema = z.object({
  key: z.string(),
  interface: z.string(),
  group: z.string(),
  version: z.string(),
  protocol: z.string(),
  methods: z.array(z.string()),
  side: z.enum(['provider', 'consumer']),
});

export const RegistrationSchema: z.ZodType<Registration> = z.object({
  key: z.string().min(1),
  source: z.string().min(1),
  sourceKind: z.enum(['zookeeper', 'eureka']),
  application: z.string(),
  kind: z.enum(['dubbo', 'http']),
  host: z.string(),
  port: z.number().int().min(0).max(65_535),
  status: z.enum(['UP', 'DOWN', 'OUT_OF_SERVICE', 'STARTING', 'UNKNOWN', 'DISABLED']),
  weight: z.number(),
  services: z.array(DubboServiceRefSchema),
  metadata: z.record(z.string(), z.string()),
  timestamp: z.number().optional(),
});

const RegistrationValue = z.object({ v: z.literal(1), registration: RegistrationSchema });
const HealthValue = z.object({
  v: z.literal(1),
  health: z.object({ reachable: z.boolean(), error: z.string().optional() }),
});
const LeaderValue = z.object({
  v: z.literal(1),
  leader: z.object({ replica: z.string().min(1).max(500), since: z.number().int() }),
});

export function recordKey(record: CatalogRecord): string {
  if (record.type === 'registration') return `${record.source}${SEPARATOR}${record.key}`;
  if (record.type === 'health') return `${HEALTH}${SEPARATOR}${record.source}`;
  return LEADER;
}

/** The message of a record: its key, and its JSON value or null for a tombstone. */
export function encodeRecord(record: CatalogRecord): { key: string; value: string | null } {
  const key = recordKey(record);
  if (record.type === 'registration')
    return { key, value: record.registration ? JSON.stringify({ v: 1, registration: record.registration }) : null };
  if (record.type === 'health') {
    const health = record.health && {
      reachable: record.health.reachable,
      ...(record.health.error ? { error: record.health.error } : {}),
    };
    return { key, value: health ? JSON.stringify({ v: 1, health }) : null };
  }
  return { key, value: record.leader ? JSON.stringify({ v: 1, leader: record.leader }) : null };
}

export type Decoded = { ok: true; record: CatalogRecord } | { ok: false; reason: string };

/** Reads a message of the catalog topic; anything else than what encodeRecord writes is refused with a reason. */
export function decodeRecord(key: Buffer | string | null, value: Buffer | string | null): Decoded {
  const text = key?.toString() ?? '';
  if (text === LEADER) {
    if (value === null) return { ok: true, record: { type: 'leader', leader: null } };
    const parsed = parseValue(LeaderValue, value);
    return parsed.ok ? { ok: true, record: { type: 'leader', leader: parsed.data.leader } } : parsed;
  }
  const at = text.indexOf(SEPARATOR);
  if (at <= 0 || at === text.length - 1) return { ok: false, reason: 'key is not <source>\\0<key>, health\\0<source> or leader' };
  const first = text.slice(0, at);
  const rest = text.slice(at + 1);
  if (first === HEALTH) {
    if (value === null) return { ok: true, record: { type: 'health', source: rest, health: null } };
    const parsed = parseValue(HealthValue, value);
    if (!parsed.ok) return parsed;
    const { reachable, error } = parsed.data.health;
    return {
      ok: true,
      record: { type: 'health', source: rest, health: error === undefined ? { reachable } : { reachable, error } },
    };
  }
  if (value === null) return { ok: true, record: { type: 'registration', source: first, key: rest, registration: null } };
  const parsed = parseValue(RegistrationValue, value);
  if (!parsed.ok) return parsed;
  const registration = parsed.data.registration;
  if (registration.source !== first || registration.key !== rest)
    return { ok: false, reason: 'registration does not match its key' };
  return { ok: true, record: { type: 'registration', source: first, key: rest, registration } };
}

function parseValue<T>(schema: z.ZodType<T>, value: Buffer | string): { ok: true; data: T } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(value.toString());
  } catch {
    return { ok: false, reason: 'value is not JSON' };
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return { ok: true, data: parsed.data };
  const issue = parsed.error.issues[0];
  return { ok: false, reason: issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid value' };
}

export function sameRegistration(a: Registration | undefined, b: Registration | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && JSON.stringify(a) === JSON.stringify(b));
}

export function sameHealth(a: SourceHealth | undefined, b: SourceHealth | undefined): boolean {
  return a?.reachable === b?.reachable && a?.error === b?.error;
}

/**
 * What the catalog topic holds, record by record, as far as this replica knows: every replica
 * keeps one from what it reads (a follower's catalog is made of it), and the leader one more of
 * what the topic will hold once its own sends land (the base its diffs are computed against).
 */
export class CatalogTopicState {
  private readonly registrations = new Map<string, Map<string, Registration>>();
  private readonly healths = new Map<string, SourceHealth>();
  leader: BridgeLeader | null = null;

  apply(record: CatalogRecord): void {
    if (record.type === 'leader') {
      this.leader = record.leader;
    } else if (record.type === 'health') {
      if (record.health) this.healths.set(record.source, record.health);
      else this.healths.delete(record.source);
    } else if (record.registration) {
      const bySource = this.registrations.get(record.source) ?? new Map<string, Registration>();
      this.registrations.set(record.source, bySource.set(record.key, record.registration));
    } else {
      const bySource = this.registrations.get(record.source);
      bySource?.delete(record.key);
      if (bySource?.size === 0) this.registrations.delete(record.source);
    }
  }

  registration(source: string, key: string): Registration | undefined {
    return this.registrations.get(source)?.get(key);
  }

  registrationsOf(source: string): ReadonlyMap<string, Registration> {
    return this.registrations.get(source) ?? new Map<string, Registration>();
  }

  health(source: string): SourceHealth | undefined {
    return this.healths.get(source);
  }

  /** Sources with registrations or a health record. */
  sources(): string[] {
    return [...new Set([...this.registrations.keys(), ...this.healths.keys()])].sort();
  }

  /** A copy that changes independently (the registrations themselves are shared, never changed). */
  clone(): CatalogTopicState {
    const copy = new CatalogTopicState();
    for (const [source, registrations] of this.registrations)
      copy.registrations.set(source, new Map<string, Registration>(registrations));
    for (const [source, health] of this.healths) copy.healths.set(source, health);
    copy.leader = this.leader;
    return copy;
  }
}

/** Applies a record read from the topic to a follower's catalog. */
export function applyToCatalog(catalog: ServiceCatalog, record: CatalogRecord): void {
  if (record.type === 'registration') {
    if (record.registration) catalog.upsert(record.registration);
    else catalog.remove(record.source, record.key);
  } else if (record.type === 'health') {
    if (record.health) catalog.sourceHealth(record.source, record.health);
    else catalog.dropSource(record.source);
  }
}

/**
 * Makes the catalog hold exactly what `state` holds: used when a replica that read registries
 * itself (as leader, or alone while Kafka was away) becomes a follower. Unchanged registrations
 * emit no change events.
 */
export function reconcileCatalog(catalog: ServiceCatalog, state: CatalogTopicState): void {
  const known = new Set(state.sources());
  for (const { source } of catalog.sources()) if (!known.has(source)) catalog.dropSource(source);
  for (const source of known) {
    catalog.replaceAll(source, [...state.registrationsOf(source).values()]);
    const health = state.health(source);
    if (health) catalog.sourceHealth(source, health);
  }
}
