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
import { io, type Socket } from 'socket.io-client';
import { checkPushedRules, PROTOCOL_VERSION, type ServerMessage, ServerMessageSchema } from '../src/agent-protocol/messages.js';

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

export interface Progress {
  type: 'progress';
  connected: number;
  /** Agents that hold (have ACKed) this worker's highest revision seen. */
  applied: Record<number, number>;
  connectErrors: number;
  disconnects: number;
  invalidFrames: number;
  nacks: number;
  resyncs: number;
  lastError?: string;
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

interface Agent {
  socket: Socket;
  revision: number;
  rules: Map<string, unknown>;
  heartbeat?: NodeJS.Timeout;
  connected: boolean;
}

const times = new Map<number, { received: number[]; acked: number[] }>();
const stats = {
  connectErrors: 0,
  disconnects: 0,
  invalidFrames: 0,
  nacks: 0,
  resyncs: 0,
  lastError: undefined as string | undefined,
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
  const socket = io(`${command.url}/agents`, {
    forceNew: true,
    transports: ['websocket'],
    auth: { token: command.token },
    // Slow reconnection: a dropped agent comes back without joining a stampede.
    reconnection: true,
    reconnectionDelay: 5_000,
    reconnectionDelayMax: 30_000,
    randomizationFactor: 0.5,
    timeout: 20_000,
  });
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
  socket.on('connect', () => {
    agent.connected = true;
    socket.emit('hello', {
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      application: command.application,
      instanceId,
      run,
      host: '127.0.0.1',
      ports: [],
      agent: { language: 'node', version: 'bench' },
      capabilities: ['limit'],
      heldRevision: agent.revision,
    });
  });
  socket.on('disconnect', (reason) => {
    if (agent.connected) stats.disconnects += 1;
    agent.connected = false;
    clearInterval(agent.heartbeat);
    stats.lastError = `disconnect: ${reason}`;
    if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 5_000 + Math.random() * 5_000);
  });
  socket.on('connect_error', (error) => {
    stats.connectErrors += 1;
    stats.lastError = `connect_error: ${error.message}`;
  });
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
        clearInterval(agent.heartbeat);
        agent.heartbeat = setInterval(
          () => socket.volatile.emit('heartbeat', { type: 'heartbeat', appliedRevision: agent.revision, sentAt: Date.now() }),
          message.heartbeatMs,
        );
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
      let started = 0;
      const batch = Math.max(1, Math.round(command.connectsPerSec / 20));
      const timer = setInterval(() => {
        for (let k = 0; k < batch && started < command.count; k++, started++) {
          agents.push(startAgent(command, command.first + started));
        }
        if (started >= command.count) clearInterval(timer);
      }, 50);
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
      for (const agent of agents) {
        clearInterval(agent.heartbeat);
        agent.socket.disconnect();
      }
      setTimeout(() => process.exit(0), 200);
      return;
  }
});
process.on('disconnect', () => process.exit(0));
