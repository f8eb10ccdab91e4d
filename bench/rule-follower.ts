/**
 * The rule half of a simulated agent, shared by the worker processes of bench/agent-fanout.ts and
 * bench/cluster.ts: every server frame checked with the protocol schema, every pushed rule with
 * parseRule (`checkPushedRules`), the set applied whole, then `ack` (or `nack`); a delta that does
 * not start at the agent's revision answered with `resync`. Records, per revision, when the frame
 * arrived and when the ack was sent (wall clock, sub-millisecond), for the benchmark's latencies.
 */
import { checkPushedRules, type ServerMessage, ServerMessageSchema } from '../src/agent-protocol/messages.js';
import type { SimulatedAgent } from './agent-socket.js';

/** A simulated agent's rule set: the revision it enforces (0 = none) and its rules by id. */
export interface RuleHolder extends SimulatedAgent {
  revision: number;
  rules: Map<string, unknown>;
}

/** A worker's rule counters, all its agents together. */
export interface RuleCounters {
  invalidFrames: number;
  nacks: number;
  resyncs: number;
}

export const noRuleCounters = (): RuleCounters => ({ invalidFrames: 0, nacks: 0, resyncs: 0 });

/** Per agent that answered a revision: when the frame carrying it arrived, and when the ack was sent (ms since the epoch). */
export interface RevisionTimes {
  received: number[];
  acked: number[];
}

export const wallNow = () => performance.timeOrigin + performance.now();

/** The revision times of a worker's agents. */
export class RevisionLog {
  private readonly times = new Map<number, RevisionTimes>();

  record(revision: number, received: number, acked: number): void {
    let entry = this.times.get(revision);
    if (!entry) this.times.set(revision, (entry = { received: [], acked: [] }));
    entry.received.push(received);
    entry.acked.push(acked);
  }

  of(revision: number): RevisionTimes {
    return this.times.get(revision) ?? { received: [], acked: [] };
  }
}

/** A server frame checked with the protocol schema (its event name must be its type); undefined, and counted, when invalid. */
export function parseServerFrame(event: string, frame: unknown, counters: RuleCounters): ServerMessage | undefined {
  const parsed = ServerMessageSchema.safeParse(frame);
  if (parsed.success && parsed.data.type === event) return parsed.data;
  counters.invalidFrames += 1;
  return undefined;
}

/**
 * Applies a `snapshot` or `delta` as an agent does (other frames are left alone): whole or not at
 * all, then ack and record its times (`arrived`: when the frame came in), or nack.
 */
export function applyRuleFrame(
  agent: RuleHolder,
  message: ServerMessage,
  arrived: number,
  counters: RuleCounters,
  log: RevisionLog,
): void {
  if (message.type !== 'snapshot' && message.type !== 'delta') return;
  if (message.type === 'delta' && message.fromRevision !== agent.revision) {
    counters.resyncs += 1;
    agent.socket.emit('resync', { type: 'resync', heldRevision: agent.revision });
    return;
  }
  const rules = message.type === 'snapshot' ? message.rules : message.upserts;
  const checked = checkPushedRules(rules);
  if (!checked.ok) {
    counters.nacks += 1;
    agent.socket.emit('nack', { type: 'nack', revision: message.revision, reason: checked.reason, keptRevision: agent.revision });
    return;
  }
  const next = message.type === 'snapshot' ? new Map<string, unknown>() : new Map(agent.rules);
  if (message.type === 'delta') for (const id of message.deletes) next.delete(id);
  for (const rule of rules) next.set((rule as { id: string }).id, rule);
  agent.rules = next;
  agent.revision = message.revision;
  agent.socket.emit('ack', { type: 'ack', revision: message.revision });
  log.record(message.revision, arrived, wallNow());
}

/** How many of the agents hold each revision. */
export function appliedRevisions(agents: readonly RuleHolder[]): Record<number, number> {
  const applied: Record<number, number> = {};
  for (const agent of agents) applied[agent.revision] = (applied[agent.revision] ?? 0) + 1;
  return applied;
}
