/**
 * One worker process of the push fan-out benchmark (bench/agent-fanout.ts): simulates `count`
 * agents, each a socket.io client of its own (its own Manager and websocket, as separate agent
 * processes would have), speaking protocol 1 as an agent does: hello, every server frame checked
 * with the protocol schema, every pushed rule with parseRule, the set applied whole, ack;
 * heartbeats every `welcome.heartbeatMs`. Records, per agent and revision, when the frame arrived
 * and when the ack was sent (wall clock, sub-millisecond), and answers the parent over IPC.
 *
 * Started by the benchmark as `node --import tsx bench/agent-fanout-client.ts`; not run by hand.
 */
import { randomBytes } from 'node:crypto';
import { checkPushedRules, type ServerMessage, ServerMessageSchema } from '../src/agent-protocol/messages.js';
import type { ConnectionCounters, SimulatedAgent } from './agent-socket.js';
import { agentSocket, keepConnected, noConnectionCounters, startGradually, startHeartbeat, stopAndExit } from './agent-socket.js';

export interface StartCommand {
  type: 'start';
  url: string;
  token: string;
  application: string;
  /** Index of this worker's first agent; instance ids are unique across workers. */
  first: number;
  count: number;
  /** New connections per second from this worker. */
  connectsPerSec: number;
}

export type ParentCommand = StartCommand | { type: 'report'; revision: number; id: number } | { type: 'stop' };

export interface Progress extends ConnectionCounters {
  type: 'progress';
  connected: number;
  /** Agents that hold (have ACKed) this worker's highest revision seen. */
  applied: Record<number, number>;
  invalidFrames: number;
  nacks: number;
  resyncs: number;
}

export interface RevisionReport {
  type: 'report';
  id: number;
  revision: number;
  /** Per agent that answered this revision: when the frame carrying it arrived, and when the ack was sent (ms since the epoch). */
  received: number[];
  acked: number[];
  /** This process' CPU time (user + system, ms) since the previous report. */
  cpuMs: number;
}

export type WorkerMessage = Progress | RevisionReport;

const now = () => performance.timeOrigin + performance.now();
const send = (message: WorkerMessage) => process.send?.(message);

interface Agent extends SimulatedAgent {
  revision: number;
  rules: Map<string, unknown>;
}

const times = new Map<number, { received: number[]; acked: number[] }>();
const stats = {
  invalidFrames: 0,
  nacks: 0,
  resyncs: 0,
  ...noConnectionCounters(),
};
const agents: Agent[] = [];
let cpuMark = process.cpuUsage();

function record(revision: number, received: number, acked: number): void {
  let entry = times.get(revision);
  if (!entry) times.set(revision, (entry = { received: [], acked: [] }));
  entry.received.push(received);
  entry.acked.push(acked);
}

function startAgent(command: StartCommand, index: number): Agent {
  const socket = agentSocket(command.url, command.token);
  const agent: Agent = { socket, revision: 0, rules: new Map(), connected: false };
  const instanceId = `bench-agent-${index}`;
  const run = randomBytes(12).toString('base64url');
  const apply = (revision: number, rules: readonly unknown[], replace: boolean, deletes: readonly string[], arrived: number) => {
    const checked = checkPushedRules(rules);
    if (!checked.ok) {
      stats.nacks += 1;
      socket.emit('nack', { type: 'nack', revision, reason: checked.reason, keptRevision: agent.revision });
      return;
    }
    const next = replace ? new Map<string, unknown>() : new Map(agent.rules);
    for (const id of deletes) next.delete(id);
    for (const rule of rules) next.set((rule as { id: string }).id, rule);
    agent.rules = next;
    agent.revision = revision;
    socket.emit('ack', { type: 'ack', revision });
    record(revision, arrived, now());
  };
  keepConnected(agent, stats, () => ({
    application: command.application,
    instanceId,
    run,
    capabilities: ['limit'],
    heldRevision: agent.revision,
  }));
  socket.onAny((event: string, frame: unknown) => {
    const arrived = now();
    const parsed = ServerMessageSchema.safeParse(frame);
    if (!parsed.success || parsed.data.type !== event) {
      stats.invalidFrames += 1;
      return;
    }
    const message: ServerMessage = parsed.data;
    switch (message.type) {
      case 'welcome':
        startHeartbeat(agent, message.heartbeatMs, () => agent.revision);
        return;
      case 'snapshot':
        apply(message.revision, message.rules, true, [], arrived);
        return;
      case 'delta':
        if (message.fromRevision !== agent.revision) {
          stats.resyncs += 1;
          socket.emit('resync', { type: 'resync', heldRevision: agent.revision });
          return;
        }
        apply(message.revision, message.upserts, false, message.deletes, arrived);
        return;
      case 'error':
        stats.lastError = `error frame: ${message.code}: ${message.message}`;
        return;
      default:
        return;
    }
  });
  return agent;
}

function progress(): Progress {
  const applied: Record<number, number> = {};
  let connected = 0;
  for (const agent of agents) {
    if (agent.connected) connected += 1;
    applied[agent.revision] = (applied[agent.revision] ?? 0) + 1;
  }
  return { type: 'progress', connected, applied, ...stats };
}

process.on('message', (command: ParentCommand) => {
  switch (command.type) {
    case 'start': {
      startGradually(command.count, command.connectsPerSec, (k) => agents.push(startAgent(command, command.first + k)));
      setInterval(() => send(progress()), 500).unref();
      return;
    }
    case 'report': {
      const entry = times.get(command.revision) ?? { received: [], acked: [] };
      const cpu = process.cpuUsage(cpuMark);
      cpuMark = process.cpuUsage();
      send({ type: 'report', id: command.id, revision: command.revision, ...entry, cpuMs: (cpu.user + cpu.system) / 1000 });
      return;
    }
    case 'stop':
      stopAndExit(agents);
      return;
  }
});
process.on('disconnect', () => process.exit(0));
