import { z } from 'zod';
import type { HelloSchema } from './messages.js';

type Hello = z.output<typeof HelloSchema>;

const BreakerState = z.enum(['CLOSED', 'OPEN', 'HALF_OPEN']);
const Millis = z.number().int().min(0);

/**
 * What the server knows of one agent (one application instance). Also the record replicas
 * exchange (cluster-agent-directory.ts), so it is a schema.
 */
export const AgentRecordSchema = z.object({
  instanceId: z.string().min(1).max(200),
  application: z.string().min(1).max(200),
  host: z.string().max(255),
  ports: z.array(z.number().int().min(0).max(65_535)).max(64),
  agent: z.object({ language: z.enum(['node', 'java']), version: z.string().max(64) }),
  capabilities: z.array(z.string().max(64)).max(64),
  protocol: z.number().int(),
  /** Where the session comes from, as the server sees it. */
  remoteAddress: z.string().max(255),
  connected: z.boolean(),
  connectedAt: Millis,
  disconnectedAt: Millis.optional(),
  lastHeartbeatAt: Millis,
  /** The revision the agent enforces: what it held at hello, then what it ACKed or kept after a NACK. */
  appliedRevision: z.number().int().min(0),
  appliedAt: Millis.optional(),
  lastNack: z
    .object({ revision: z.number().int(), reason: z.string().max(2_000), keptRevision: z.number().int(), at: Millis })
    .optional(),
  /** Agent clock minus server clock at the last heartbeat, ms. */
  clockSkewMs: z.number().optional(),
  /** Last reported state per breaker rule. */
  breakers: z.record(z.string(), z.object({ state: BreakerState, at: z.number() })),
});
export type AgentRecord = z.output<typeof AgentRecordSchema>;

/** A change in an agent's session or rule state, as the directory records it (the dashboard's live feed). */
export interface AgentEvent {
  application: string;
  instanceId: string;
  event: 'connected' | 'disconnected' | 'ack' | 'nack';
  /** connected: the revision held at hello; ack, nack: the revision answered. */
  revision?: number;
  /** nack: why the agent refused the set. */
  reason?: string;
  at: number;
}

/** Where an instance stands against the application's current revision (Istio's SYNCED / STALE / NACKED). */
export type SyncState = 'in-sync' | 'pending' | 'nacked' | 'disconnected';

export interface RevisionStatus {
  application: string;
  revision: number;
  /** Connected instances enforcing this revision or a later one. */
  acknowledged: number;
  /** Connected instances that refused it (or a later one) and enforce an earlier set. */
  nacked: number;
  /** Connected instances that have not answered yet. */
  pending: number;
  connected: number;
  instances: { instanceId: string; appliedRevision: number; state: Exclude<SyncState, 'disconnected'>; nack?: string }[];
}

const MAX_BREAKERS_PER_AGENT = 1_000;
/** Disconnected instances stay listed this long (and at most this many), so an operator sees who left. */
const DISCONNECTED_RETENTION_MS = 15 * 60_000;
const MAX_DISCONNECTED = 20_000;

/**
 * The agents of this replica's sessions, in memory: who is connected, since when, which revision
 * each enforces, their last NACK. Plain class; the hub feeds it frames.
 */
export class AgentDirectory {
  private readonly byInstance = new Map<string, AgentRecord>();
  private readonly byApplication = new Map<string, Set<string>>();
  private disconnectedCount = 0;
  /** Disconnections in time order (entries of instances that came back are skipped when reached). */
  private readonly departures: { instanceId: string; at: number }[] = [];
  private readonly listeners = new Set<(event: AgentEvent) => void>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * Hears every connection, disconnection, ACK and NACK as it is recorded. Called synchronously on
   * the agent's frame path: a listener only queues the event, and its errors are its own.
   */
  subscribe(listener: (event: AgentEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Registers a session from its hello; a record of the same instance (a reconnection) is replaced. */
  connect(hello: Hello, remoteAddress: string): AgentRecord {
    this.forget(hello.instanceId);
    const at = this.now();
    const record: AgentRecord = {
      instanceId: hello.instanceId,
      application: hello.application,
      host: hello.host,
      ports: [...hello.ports],
      agent: { ...hello.agent },
      capabilities: [...hello.capabilities],
      protocol: hello.protocol,
      remoteAddress,
      connected: true,
      connectedAt: at,
      lastHeartbeatAt: at,
      appliedRevision: hello.heldRevision,
      breakers: {},
    };
    this.byInstance.set(record.instanceId, record);
    const members = this.byApplication.get(record.application) ?? new Set<string>();
    members.add(record.instanceId);
    this.byApplication.set(record.application, members);
    this.tell({
      application: record.application,
      instanceId: record.instanceId,
      event: 'connected',
      revision: hello.heldRevision,
      at,
    });
    return record;
  }

  disconnect(instanceId: string): void {
    const record = this.byInstance.get(instanceId);
    if (!record?.connected) return;
    record.connected = false;
    record.disconnectedAt = this.now();
    this.disconnectedCount += 1;
    this.departures.push({ instanceId, at: record.disconnectedAt });
    this.tell({ application: record.application, instanceId, event: 'disconnected', at: record.disconnectedAt });
    this.sweep();
  }

  get(instanceId: string): AgentRecord | undefined {
    return this.byInstance.get(instanceId);
  }

  acknowledged(instanceId: string, revision: number): void {
    const record = this.byInstance.get(instanceId);
    if (!record) return;
    record.appliedRevision = revision;
    record.appliedAt = this.now();
    this.tell({ application: record.application, instanceId, event: 'ack', revision, at: record.appliedAt });
  }

  refused(instanceId: string, nack: { revision: number; reason: string; keptRevision: number }): void {
    const record = this.byInstance.get(instanceId);
    if (!record) return;
    record.lastNack = { ...nack, at: this.now() };
    record.appliedRevision = nack.keptRevision;
    this.tell({
      application: record.application,
      instanceId,
      event: 'nack',
      revision: nack.revision,
      reason: nack.reason,
      at: record.lastNack.at,
    });
  }

  heartbeat(instanceId: string, appliedRevision: number, sentAt: number): void {
    const record = this.byInstance.get(instanceId);
    if (!record) return;
    const at = this.now();
    record.lastHeartbeatAt = at;
    record.appliedRevision = appliedRevision;
    record.clockSkewMs = sentAt - at;
  }

  breaker(instanceId: string, ruleId: string, state: 'CLOSED' | 'OPEN' | 'HALF_OPEN', at: number): void {
    const record = this.byInstance.get(instanceId);
    if (!record) return;
    if (!(ruleId in record.breakers) && Object.keys(record.breakers).length >= MAX_BREAKERS_PER_AGENT) return;
    record.breakers[ruleId] = { state, at };
  }

  listening(instanceId: string, ports: number[]): void {
    const record = this.byInstance.get(instanceId);
    if (record) record.ports = [...ports];
  }

  /** Instances of an application, connected first, then by instance id. */
  list(application: string): AgentRecord[] {
    const ids = this.byApplication.get(application) ?? new Set<string>();
    return [...ids]
      .map((id) => this.byInstance.get(id))
      .filter((r): r is AgentRecord => r !== undefined)
      .sort(connectedFirst);
  }

  /** Applications with at least one connected instance. */
  applications(): string[] {
    return [...this.byApplication.entries()]
      .filter(([, ids]) => [...ids].some((id) => this.byInstance.get(id)?.connected))
      .map(([application]) => application)
      .sort();
  }

  /** `host:port` of every connected instance of an application. */
  addresses(application: string): string[] {
    return addressesOf(this.list(application));
  }

  counts(): { connected: number; disconnected: number } {
    return { connected: this.byInstance.size - this.disconnectedCount, disconnected: this.disconnectedCount };
  }

  static syncState(record: AgentRecord, revision: number): SyncState {
    if (!record.connected) return 'disconnected';
    if (record.appliedRevision >= revision) return 'in-sync';
    return record.lastNack && record.lastNack.revision > record.appliedRevision ? 'nacked' : 'pending';
  }

  /** How the connected instances of an application stand against `revision` (per instance unless `instances` is false). */
  revisionStatus(application: string, revision: number, instances = true): RevisionStatus {
    const members = this.byApplication.get(application) ?? new Set<string>();
    const records = instances ? this.list(application) : [...members].map((id) => this.byInstance.get(id)!);
    return revisionStatusOf(application, revision, records, instances);
  }

  /** Every record, connected or not, in no particular order. */
  all(): IterableIterator<AgentRecord> {
    return this.byInstance.values();
  }

  private tell(event: AgentEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // The listener owns its errors: recording an agent's state must not depend on it.
      }
    }
  }

  private forget(instanceId: string): void {
    const record = this.byInstance.get(instanceId);
    if (!record) return;
    if (!record.connected) this.disconnectedCount -= 1;
    this.byInstance.delete(instanceId);
    const members = this.byApplication.get(record.application);
    members?.delete(instanceId);
    if (members?.size === 0) this.byApplication.delete(record.application);
  }

  /** Drops disconnected records past their retention, and the oldest beyond the cap. */
  sweep(): void {
    const cutoff = this.now() - DISCONNECTED_RETENTION_MS;
    while (this.departures.length > 0) {
      const first = this.departures[0]!;
      const record = this.byInstance.get(first.instanceId);
      const current = record !== undefined && !record.connected && record.disconnectedAt === first.at;
      if (current && first.at >= cutoff && this.disconnectedCount <= MAX_DISCONNECTED) break;
      this.departures.shift();
      if (current) this.forget(first.instanceId);
    }
  }
}

/** Connected first, then by instance id. */
export function connectedFirst(a: AgentRecord, b: AgentRecord): number {
  return Number(b.connected) - Number(a.connected) || (a.instanceId < b.instanceId ? -1 : 1);
}

/** `host:port` of every connected one of `records`. */
export function addressesOf(records: Iterable<AgentRecord>): string[] {
  const out: string[] = [];
  for (const record of records) if (record.connected) for (const port of record.ports) out.push(`${record.host}:${port}`);
  return out;
}

/** How `records` (one application's) stand against `revision`; `instances` lists them one by one. */
export function revisionStatusOf(
  application: string,
  revision: number,
  records: Iterable<AgentRecord>,
  instances: boolean,
): RevisionStatus {
  const status: RevisionStatus = { application, revision, acknowledged: 0, nacked: 0, pending: 0, connected: 0, instances: [] };
  for (const record of records) {
    const state = AgentDirectory.syncState(record, revision);
    if (state === 'disconnected') continue;
    status.connected += 1;
    if (state === 'in-sync') status.acknowledged += 1;
    else if (state === 'nacked') status.nacked += 1;
    else status.pending += 1;
    if (instances)
      status.instances.push({
        instanceId: record.instanceId,
        appliedRevision: record.appliedRevision,
        state,
        ...(state === 'nacked' && record.lastNack ? { nack: record.lastNack.reason } : {}),
      });
  }
  return status;
}
