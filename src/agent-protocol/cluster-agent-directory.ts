import { z } from 'zod';
import {
  addressesOf,
  type AgentDirectory,
  type AgentEvent,
  type AgentRecord,
  AgentRecordSchema,
  connectedFirst,
  revisionStatusOf,
  type RevisionStatus,
} from './agent-directory.js';

/**
 * What a replica tells the others of its agents' sessions (topic `AGENTS_TOPIC`): a batch of
 * records, each replacing what the replica said of that instance before.
 */
export const AgentStateMessage = z.object({
  v: z.literal(1),
  replica: z.string().min(1).max(200),
  at: z.number().int(),
  agents: z.array(AgentRecordSchema).max(1_000),
});
export type AgentStateMessage = z.output<typeof AgentStateMessage>;

/** Every replica repeats all its records this often: heartbeat times, breaker states, and proof it lives. */
export const REFRESH_MS = 5_000;

/** An agent's record as the cluster sees it, with the replica that holds (or held) its session. */
export type ClusterAgentRecord = AgentRecord & { replica: string };

export interface ReplicaState {
  replica: string;
  self: boolean;
  /** Connected agents whose session this replica holds, as far as this replica knows. */
  connected: number;
  /** When this replica last heard of it (for itself: now). */
  lastSeenAt: number;
}

/** Another replica's agent now listens at `record`'s host and ports, or no longer (`undefined`). */
export type AddressListener = (instanceId: string, application: string, record: AgentRecord | undefined) => void;

interface RemoteEntry {
  record: AgentRecord;
  seenAt: number;
}

/** What the last event told of an instance, to tell the next change apart. */
interface Told {
  application: string;
  connected: boolean;
  appliedRevision: number;
  nackAt?: number;
  replica: string;
}

export interface ClusterAgentDirectoryOptions {
  /** Another replica's records are dropped when it has not repeated them for this long (default 4 refreshes). */
  ttlMs?: number;
  now?: () => number;
}

/**
 * The agents of every replica: this replica's own directory, live, merged with what the other
 * replicas last said of theirs. An instance known to several replicas (its session moved when a
 * replica died, before that replica's records expired) is the record of its newest connected
 * session. Listeners get the merged view's changes as agent events, so a dashboard on any replica
 * sees every agent connect, disconnect, ACK and NACK. Plain class; the Kafka exchange
 * (agent-directory-exchange.ts) feeds it.
 */
export class ClusterAgentDirectory {
  private readonly remote = new Map<string, Map<string, RemoteEntry>>();
  private readonly replicaSeenAt = new Map<string, number>();
  /** Instances with a remote record, by application (of that record). */
  private readonly remoteByApplication = new Map<string, Set<string>>();
  private readonly told = new Map<string, Told>();
  private readonly listeners = new Set<(event: AgentEvent) => void>();
  private readonly addressListeners = new Set<AddressListener>();
  private readonly now: () => number;
  private readonly ttlMs: number;

  constructor(
    readonly local: AgentDirectory,
    readonly replica: string,
    options: ClusterAgentDirectoryOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.ttlMs = options.ttlMs ?? 4 * REFRESH_MS;
    local.subscribe((event) => this.settle(event.instanceId));
  }

  /** Hears every change of the merged view: connections, disconnections, ACKs, NACKs. */
  subscribe(listener: (event: AgentEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Hears another replica's agents appear, move or go (`undefined`): where they listen, for the
   * peer index. This replica's own agents are not told here.
   */
  watchRemoteAddresses(listener: AddressListener): () => void {
    this.addressListeners.add(listener);
    return () => this.addressListeners.delete(listener);
  }

  /** Takes in another replica's message; this replica's own are ignored. */
  apply(message: AgentStateMessage): void {
    if (message.replica === this.replica) return;
    const at = this.now();
    this.replicaSeenAt.set(message.replica, at);
    let entries = this.remote.get(message.replica);
    if (!entries) this.remote.set(message.replica, (entries = new Map<string, RemoteEntry>()));
    for (const record of message.agents) {
      const previous = entries.get(record.instanceId);
      if (previous && previous.record.application !== record.application) this.unindex(record.instanceId, previous.record);
      entries.set(record.instanceId, { record, seenAt: at });
      let members = this.remoteByApplication.get(record.application);
      if (!members) this.remoteByApplication.set(record.application, (members = new Set<string>()));
      members.add(record.instanceId);
      this.settle(record.instanceId, true);
    }
  }

  /** Drops other replicas' records not repeated within the TTL (their replica died or lost Kafka). */
  expire(): void {
    const cutoff = this.now() - this.ttlMs;
    for (const [replica, entries] of this.remote) {
      for (const [instanceId, entry] of entries) {
        if (entry.seenAt >= cutoff) continue;
        entries.delete(instanceId);
        this.unindex(instanceId, entry.record);
        this.settle(instanceId, true);
      }
      if (entries.size === 0) {
        this.remote.delete(replica);
        this.replicaSeenAt.delete(replica);
      }
    }
  }

  /** The merged record of an instance. */
  get(instanceId: string): ClusterAgentRecord | undefined {
    let best: ClusterAgentRecord | undefined;
    const own = this.local.get(instanceId);
    if (own) best = { ...own, replica: this.replica };
    for (const [replica, entries] of this.remote) {
      const entry = entries.get(instanceId);
      if (entry && (!best || newer(entry.record, best))) best = { ...entry.record, replica };
    }
    return best;
  }

  /** Instances of an application on every replica, connected first, then by instance id. */
  list(application: string): ClusterAgentRecord[] {
    const ids = new Set(this.local.list(application).map((r) => r.instanceId));
    for (const id of this.remoteByApplication.get(application) ?? []) ids.add(id);
    const out: ClusterAgentRecord[] = [];
    for (const id of ids) {
      const record = this.get(id);
      // A moved instance's newest record may name another application: it is listed there.
      if (record?.application === application) out.push(record);
    }
    return out.sort(connectedFirst);
  }

  /** Applications with at least one connected instance on any replica. */
  applications(): string[] {
    const names = new Set([...this.local.applications(), ...this.remoteByApplication.keys()]);
    return [...names].filter((name) => this.list(name).some((r) => r.connected)).sort();
  }

  addresses(application: string): string[] {
    return addressesOf(this.list(application));
  }

  revisionStatus(application: string, revision: number, instances = true): RevisionStatus {
    return revisionStatusOf(application, revision, this.list(application), instances);
  }

  /** The replicas this one knows of (itself first), with their connected agents. */
  replicas(): ReplicaState[] {
    const out: ReplicaState[] = [
      { replica: this.replica, self: true, connected: this.local.counts().connected, lastSeenAt: this.now() },
    ];
    for (const [replica, entries] of this.remote) {
      let connected = 0;
      for (const { record } of entries.values()) if (record.connected) connected += 1;
      out.push({ replica, self: false, connected, lastSeenAt: this.replicaSeenAt.get(replica) ?? 0 });
    }
    return out;
  }

  counts(): { connected: number; disconnected: number } {
    const ids = new Set<string>();
    for (const record of this.local.all()) ids.add(record.instanceId);
    for (const entries of this.remote.values()) for (const id of entries.keys()) ids.add(id);
    let connected = 0;
    for (const id of ids) if (this.get(id)?.connected) connected += 1;
    return { connected, disconnected: ids.size - connected };
  }

  private unindex(instanceId: string, record: AgentRecord): void {
    const stillThere = [...this.remote.values()].some(
      (entries) => entries.get(instanceId)?.record.application === record.application,
    );
    if (stillThere) return;
    const members = this.remoteByApplication.get(record.application);
    members?.delete(instanceId);
    if (members?.size === 0) this.remoteByApplication.delete(record.application);
  }

  /** Tells listeners how the merged record of `instanceId` changed since they were last told. */
  private settle(instanceId: string, remote = false): void {
    const record = this.get(instanceId);
    const before = this.told.get(instanceId);
    if (!record) {
      this.told.delete(instanceId);
      if (remote && before?.connected) this.tellAddresses(instanceId, before.application, undefined);
      return;
    }
    const at = this.now();
    const base = { application: record.application, instanceId };
    if (record.connected && !before?.connected) {
      this.tell({ ...base, event: 'connected', revision: record.appliedRevision, at });
    } else if (!record.connected && before?.connected) {
      this.tell({ ...base, event: 'disconnected', at });
    } else if (record.connected && before) {
      if (record.lastNack && record.lastNack.at !== before.nackAt) {
        this.tell({ ...base, event: 'nack', revision: record.lastNack.revision, reason: record.lastNack.reason, at });
      } else if (record.appliedRevision > before.appliedRevision) {
        this.tell({ ...base, event: 'ack', revision: record.appliedRevision, at });
      }
    }
    if (
      remote &&
      record.replica !== this.replica &&
      (record.connected !== before?.connected || record.replica !== before.replica)
    )
      this.tellAddresses(instanceId, record.application, record.connected ? record : undefined);
    this.told.set(instanceId, {
      application: record.application,
      connected: record.connected,
      appliedRevision: record.appliedRevision,
      ...(record.lastNack ? { nackAt: record.lastNack.at } : {}),
      replica: record.replica,
    });
  }

  private tell(event: AgentEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // The listener owns its errors.
      }
    }
  }

  private tellAddresses(instanceId: string, application: string, record: AgentRecord | undefined): void {
    for (const listener of this.addressListeners) {
      try {
        listener(instanceId, application, record);
      } catch {
        // The listener owns its errors.
      }
    }
  }
}

/** Whether `a` is a newer view of the instance than `b`: a connected session over a closed one, then the later session. */
function newer(a: AgentRecord, b: AgentRecord): boolean {
  if (a.connected !== b.connected) return a.connected;
  if (a.connected) return a.connectedAt > b.connectedAt;
  return (a.disconnectedAt ?? 0) > (b.disconnectedAt ?? 0);
}
