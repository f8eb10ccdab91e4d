import { z } from 'zod';
import { PEER } from './peer-address.js';
import { parseRule } from './rules.js';

/**
 * Every message of the agent protocol (docs/agent-protocol.md), one schema each. Server and
 * agents validate every frame they receive against these: a frame that does not parse is refused
 * with an `error` (server side) or ignored and counted (agent side), never half-applied.
 *
 * Frames are JSON objects sent as socket.io events whose event name is the frame's `type`.
 */

export const PROTOCOL_VERSION = 1;

const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,127}$/, 'an application name: lower-case letters, digits, . _ - (at most 128)');
const revision = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const text = (max: number) => z.string().min(1).max(max);

// ---- agent → server ------------------------------------------------------------------------------

/** The first frame of a session. The token travels in the socket.io handshake (`auth.token`), not here. */
export const HelloSchema = z.strictObject({
  type: z.literal('hello'),
  protocol: z.number().int().min(1),
  application: name,
  /** Names the instance (e.g. a pod name); may be configured, so it can outlive a process. */
  instanceId: text(128),
  /**
   * A random id of this agent process, new at every start: `stats` and `records` sequences are
   * numbered per run, so (instanceId, run, seq) names one frame for ever.
   */
  run: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, '8 to 64 characters of A-Z a-z 0-9 _ -'),
  host: text(255),
  ports: z.array(z.number().int().min(1).max(65535)).max(16),
  agent: z.strictObject({ language: z.enum(['node', 'java']), version: text(64) }),
  /** What the agent can enforce, e.g. `limit`, `breaker`, `degrade`, `http-inbound`, `dubbo-outbound`. */
  capabilities: z.array(text(64)).max(64),
  /** The revision the agent enforces now (from memory or its state directory); 0 if none. */
  heldRevision: revision,
});

export const AckSchema = z.strictObject({ type: z.literal('ack'), revision });

export const NackSchema = z.strictObject({
  type: z.literal('nack'),
  revision,
  /** Why the set was refused; the agent keeps enforcing `keptRevision`. */
  reason: text(2_000),
  keptRevision: revision,
});

export const HeartbeatSchema = z.strictObject({
  type: z.literal('heartbeat'),
  appliedRevision: revision,
  /** The agent's clock, ms since the epoch: lets the server see skew. */
  sentAt: z.number().int().min(0),
});

export const BreakerStateSchema = z.strictObject({
  type: z.literal('breaker-state'),
  ruleId: text(64),
  /** For a per-caller or per-callee breaker, which one. */
  peer: z.string().max(128).optional(),
  state: z.enum(['CLOSED', 'OPEN', 'HALF_OPEN']),
  at: z.number().int().min(0),
});

/** The ports the instance listens on, sent whenever they change (an app often listens after the agent connects). */
export const ListeningSchema = z.strictObject({
  type: z.literal('listening'),
  ports: z.array(z.number().int().min(1).max(65535)).max(16),
});

/** Asks for a snapshot: the agent received a delta that does not start at the revision it holds. */
export const ResyncSchema = z.strictObject({ type: z.literal('resync'), heldRevision: revision });

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** An application, or (an outbound call's unnamed callee) `host:port`, or '' (peer-address.ts). */
const peer = z.string().regex(PEER, "an application name, host:port, or ''");
const direction = z.enum(['inbound', 'outbound']);
const protocol = z.enum(['http', 'dubbo']);

/**
 * One second of one call key's statistics. `resource` is `<METHOD> <path template>` for HTTP (ids
 * in paths written `{id}`, see docs/stats.md) or `<interface>#<method>` for Dubbo.
 */
export const StatsEntrySchema = z.strictObject({
  direction,
  /**
   * The caller (inbound) or callee (outbound) application; for an outbound call whose callee the
   * agent could not name, the address it went to, `host:port` (lower case, IPv6 in brackets), which
   * the server replaces with the application listening there when it knows it; '' when unknown.
   */
  peer,
  protocol,
  resource: text(600),
  /** Calls that reached the agent; every other counter is a part of it. */
  calls: count,
  successes: count,
  errors: count,
  limited: count,
  /** Rejected by a breaker (open or half-open). */
  broken: count,
  /** Answered with a degrade rule's fallback (forced or replacing a rejection). */
  degraded: count,
  /** Completed slower than the slowest `slowCallMs` of the breakers matching it, or 1,000 ms without one. */
  slow: count,
  latencySumMs: count,
  latencyMaxMs: count,
  /** Sparse latency histogram of completed calls: [bucket, count] pairs, buckets per latency-histogram.ts. */
  histogram: z.array(z.tuple([z.number().int().min(0).max(511), count])).max(512),
});

/** One second of the instance's statistics, numbered so the server counts each batch once. */
export const StatsSchema = z.strictObject({
  type: z.literal('stats'),
  /** 1, 2, 3… per agent process (`hello.run`), one per batch; never reused within the run. */
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  /** The second the batch covers, seconds since the epoch (agent clock). */
  second: z.number().int().min(0),
  /** Batches the agent dropped (buffer full while disconnected) since it sent the previous one. */
  dropped: count,
  entries: z.array(StatsEntrySchema).max(5_000),
});

export const CallRecordSchema = z.strictObject({
  /** When the call started, ms since the epoch. */
  at: z.number().int().min(0),
  traceId: z.string().regex(/^[0-9a-f]{16,32}$/, 'hex, 16–32 characters'),
  direction,
  caller: peer,
  callee: peer,
  protocol,
  /** HTTP method, or the Dubbo interface. */
  method: text(256),
  /** HTTP path without the query, or the Dubbo method. */
  path: z.string().max(2_048),
  /** HTTP status; 0 when there was no response. */
  status: z.number().int().min(0).max(999),
  latencyMs: count,
  outcome: z.enum(['success', 'error', 'limited', 'broken', 'degraded']),
  /** Why it was kept: every slow, failed or blocked call (up to a cap per second), and a sample of the rest. */
  kept: z.enum(['slow', 'error', 'blocked', 'sampled']),
  ruleId: text(64).optional(),
  /** Configured request headers (tenant, user…), name → value. */
  details: z.record(z.string().regex(/^[a-z0-9-]{1,64}$/), z.string().max(256)).optional(),
});

export const RecordsSchema = z.strictObject({
  type: z.literal('records'),
  /** 1, 2, 3… per agent process (`hello.run`), separate from the stats sequence. */
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  dropped: count,
  records: z.array(CallRecordSchema).max(1_000),
});

export const AgentMessageSchema = z.discriminatedUnion('type', [
  HelloSchema,
  AckSchema,
  NackSchema,
  HeartbeatSchema,
  BreakerStateSchema,
  ListeningSchema,
  ResyncSchema,
  StatsSchema,
  RecordsSchema,
]);

// ---- server → agent ------------------------------------------------------------------------------

export const WelcomeSchema = z.strictObject({
  type: z.literal('welcome'),
  protocol: z.number().int().min(1),
  /** Send a heartbeat this often; the server drops a session silent for three periods. */
  heartbeatMs: z.number().int().min(1_000).max(300_000),
  serverTime: z.number().int().min(0),
});

/** The application's whole rule set at a revision; not sent when the agent already holds it. */
export const SnapshotSchema = z.strictObject({
  type: z.literal('snapshot'),
  application: name,
  revision,
  rules: z.array(z.unknown()).max(100_000),
});

/** Changes from `fromRevision` to `revision`; an agent not at `fromRevision` asks for a snapshot. */
export const DeltaSchema = z.strictObject({
  type: z.literal('delta'),
  application: name,
  fromRevision: revision,
  revision,
  upserts: z.array(z.unknown()).max(100_000),
  deletes: z.array(text(64)).max(100_000),
});

const address = z.string().regex(/^[A-Za-z0-9._:[\]-]{1,260}:\d{1,5}$/, 'host:port');

/**
 * Where the callees of the application's outbound rules listen, `host:port` → application, so the
 * agent can name the callee of a call made by address. Replaces the previous map whole.
 */
export const PeersSchema = z.strictObject({
  type: z.literal('peers'),
  application: name,
  addresses: z.array(z.strictObject({ address, application: name })).max(100_000),
});

export const ProtocolErrorSchema = z.strictObject({
  type: z.literal('error'),
  code: z.enum(['unauthorized', 'bad-frame', 'unsupported-protocol', 'too-large', 'internal']),
  message: text(2_000),
});

/**
 * The server's answer to one `stats` or `records` frame: `accepted` once the frame is durably
 * queued for aggregation (produced to Kafka), or refused (the server's queue is full or it is
 * shutting down), so the agent sends it again later. Until then the agent keeps the frame.
 */
export const StatsAckSchema = z.strictObject({
  type: z.literal('stats-ack'),
  kind: z.enum(['stats', 'records']),
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  accepted: z.boolean(),
});

export const ServerMessageSchema = z.discriminatedUnion('type', [
  WelcomeSchema,
  SnapshotSchema,
  DeltaSchema,
  PeersSchema,
  ProtocolErrorSchema,
  StatsAckSchema,
]);

export type AgentMessage = z.output<typeof AgentMessageSchema>;
/** One call key's statistics for one second, as agents send them and rollups store them. */
export type StatsEntry = z.output<typeof StatsEntrySchema>;
export type ServerMessage = z.output<typeof ServerMessageSchema>;

/**
 * Rules inside snapshots and deltas are validated one by one with the rule schema, so the agent
 * can name the rule it refuses in its NACK (and keep its last good set).
 */
export function checkPushedRules(rules: readonly unknown[]): { ok: true } | { ok: false; reason: string } {
  for (const [index, raw] of rules.entries()) {
    const parsed = parseRule(raw);
    if (!parsed.ok) {
      const id = typeof raw === 'object' && raw !== null && 'id' in raw ? String(raw.id).slice(0, 64) : `#${index}`;
      const issue = parsed.issues[0];
      return { ok: false, reason: `rule ${id}: ${issue ? `${issue.path || '(rule)'}: ${issue.message}` : 'invalid'}` };
    }
  }
  return { ok: true };
}
