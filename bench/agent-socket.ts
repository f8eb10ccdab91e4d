/**
 * Shared by the worker processes of simulated agents (bench/agent-fanout-client.ts,
 * bench/stats-agents-client.ts) and the probe agent of bench/stats-ingest.ts: each agent a
 * socket.io client of its own (its own Manager and websocket, as separate agent processes would
 * have), its hello, heartbeats and connection counters, and a worker's gradual start and its stop.
 */
import { io, type Socket } from 'socket.io-client';
import { type HelloSchema, PROTOCOL_VERSION } from '../src/agent-protocol/messages.js';

/** What every simulated agent keeps of its connection. */
export interface SimulatedAgent {
  socket: Socket;
  connected: boolean;
  heartbeat?: NodeJS.Timeout;
}

/** A worker's connection counters, all its agents together. */
export interface ConnectionCounters {
  connectErrors: number;
  disconnects: number;
  lastError?: string;
}

export const noConnectionCounters = (): ConnectionCounters => ({ connectErrors: 0, disconnects: 0, lastError: undefined });

type Hello = ReturnType<typeof HelloSchema.parse>;
/** The parts of a hello that differ from agent to agent. */
export type HelloFields = Pick<Hello, 'application' | 'instanceId' | 'run' | 'capabilities' | 'heldRevision'>;

/** A simulated agent's hello (on 127.0.0.1, no ports). */
export function hello(fields: HelloFields): Hello {
  return {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    application: fields.application,
    instanceId: fields.instanceId,
    run: fields.run,
    host: '127.0.0.1',
    ports: [],
    agent: { language: 'node', version: 'bench' },
    capabilities: fields.capabilities,
    heldRevision: fields.heldRevision,
  };
}

/** An agent's own socket.io client of the server's `/agents` namespace. */
export function agentSocket(url: string, token: string): Socket {
  return io(`${url}/agents`, {
    forceNew: true,
    transports: ['websocket'],
    auth: { token },
    // Slow reconnection: a dropped agent comes back without joining a stampede.
    reconnection: true,
    reconnectionDelay: 5_000,
    reconnectionDelayMax: 30_000,
    randomizationFactor: 0.5,
    timeout: 20_000,
  });
}

/**
 * An agent's connection handling: a hello on every connect (its fields read then), disconnects and
 * connect errors counted in `counters` (`onDisconnect` resets the agent's own state), heartbeats
 * stopped on a disconnect, and a session the server closed opened again after 5–10 s.
 */
export function keepConnected(
  agent: SimulatedAgent,
  counters: ConnectionCounters,
  fields: () => HelloFields,
  onDisconnect?: () => void,
): void {
  const { socket } = agent;
  socket.on('connect', () => {
    agent.connected = true;
    socket.emit('hello', hello(fields()));
  });
  socket.on('disconnect', (reason) => {
    if (agent.connected) counters.disconnects += 1;
    agent.connected = false;
    onDisconnect?.();
    clearInterval(agent.heartbeat);
    counters.lastError = `disconnect: ${reason}`;
    if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 5_000 + Math.random() * 5_000);
  });
  socket.on('connect_error', (error) => {
    counters.connectErrors += 1;
    counters.lastError = `connect_error: ${error.message}`;
  });
}

/** (Re)starts an agent's heartbeats, every `everyMs` (`welcome.heartbeatMs`), each with the revision it applies then. */
export function startHeartbeat(agent: SimulatedAgent, everyMs: number, appliedRevision: () => number): void {
  clearInterval(agent.heartbeat);
  agent.heartbeat = setInterval(
    () => agent.socket.volatile.emit('heartbeat', { type: 'heartbeat', appliedRevision: appliedRevision(), sentAt: Date.now() }),
    everyMs,
  );
}

/** Starts `count` agents (`start(k)` the k-th), `connectsPerSec` a second in a batch every 50 ms; then calls `done`. */
export function startGradually(count: number, connectsPerSec: number, start: (k: number) => void, done?: () => void): void {
  let started = 0;
  const batch = Math.max(1, Math.round(connectsPerSec / 20));
  const timer = setInterval(() => {
    for (let k = 0; k < batch && started < count; k++, started++) start(started);
    if (started >= count) {
      clearInterval(timer);
      done?.();
    }
  }, 50);
}

/** Closes every agent's connection, then (200 ms later) ends the worker process. */
export function stopAndExit(agents: readonly SimulatedAgent[]): void {
  for (const agent of agents) {
    clearInterval(agent.heartbeat);
    agent.socket.disconnect();
  }
  setTimeout(() => process.exit(0), 200);
}
