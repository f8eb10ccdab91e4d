/**
 * One worker process of the statistics ingest benchmark (bench/stats-ingest.ts): simulates `count`
 * agents, each a socket.io client of its own (its own Manager and websocket, as separate agent
 * processes would have), speaking protocol 1 as an agent does: hello (with a `run` of its own),
 * heartbeats every `welcome.heartbeatMs`, and — while told to send — one `stats` frame a second
 * for the second that just ended, each agent at its own phase within the second (the agents of an
 * estate are not synchronised). Delivery as docs/agent-protocol.md says: frames are sent only on an
 * established session (after `welcome`) and kept until the server's `stats-ack`; a refused frame is
 * sent again, before newer ones, after holding back for 1 s; a new session sends the frames in
 * flight again first; at most 600 frames are held per agent (the oldest waiting one is dropped and
 * counted in the next frame's `dropped`). (Not simulated: the resend of frames unacknowledged for
 * 30 s on the same session.) Counts frames made, sent, acknowledged, refused and dropped, `error`
 * frames, and the calls of the frames made per application (for the exactness check).
 * With `rules` (bench/cluster.ts) the agents also enforce their application's rules as the push
 * fan-out's agents do (bench/rule-follower.ts): pushed sets applied and ACKed, their times recorded.
 *
 * Started by the benchmark as `node --import tsx bench/stats-agents-client.ts`; not run by hand.
 */
import type { ConnectionCounters } from './agent-socket.js';
import { agentSocket, keepConnected, noConnectionCounters, startGradually, startHeartbeat, stopAndExit } from './agent-socket.js';
import {
  applyRuleFrame,
  appliedRevisions,
  noRuleCounters,
  parseServerFrame,
  RevisionLog,
  type RevisionTimes,
  type RuleCounters,
  type RuleHolder,
  wallNow,
} from './rule-follower.js';
import {
  appName,
  bodyPool,
  checkWorkload,
  type EntryBody,
  type EntryKey,
  instanceKeys,
  newRun,
  prng,
  statsFrame,
} from './stats-load.js';

export interface StartCommand {
  type: 'start';
  /** Agent i connects to `urls[i % urls.length]` (several server replicas, spread as a round-robin balancer would). */
  urls: string[];
  token: string;
  /** Application names are `<prefix>-<n>`, n < apps; instance ids `<prefix>-i<agent index>`. */
  prefix: string;
  apps: number;
  /** Index of this worker's first agent; instance ids are unique across workers. */
  first: number;
  count: number;
  /** New connections per second from this worker. */
  connectsPerSec: number;
  seed: number;
  /** Whether the agents apply and ACK pushed rule sets (and record their times). */
  rules: boolean;
}

export type ParentCommand =
  | StartCommand
  /** The first `active` agents of this worker send one frame a second; the others only heartbeat. */
  | { type: 'send'; active: number }
  /** `revision`: also the agents' times of that revision. */
  | { type: 'report'; id: number; totals: boolean; revision?: number }
  | { type: 'stop' };

export interface Counters extends ConnectionCounters, RuleCounters {
  connected: number;
  established: number;
  /** Stats frames made (one per agent and second while sending). */
  made: number;
  /** Stats frames emitted, first sends and resends. */
  sent: number;
  resent: number;
  /** Frames held: waiting to be sent, or sent and not acknowledged. */
  held: number;
  /** Frames dropped by the agents' bounded buffers (their calls are not in `calls`). */
  dropped: number;
  acksAccepted: number;
  acksRefused: number;
  errorFrames: number;
  /** How many agents hold each rule revision. */
  applied: Record<number, number>;
}

export interface Progress extends Counters {
  type: 'progress';
}

export interface Report extends Counters {
  type: 'report';
  id: number;
  /** This process' CPU time since it started (user + system), ms. */
  cpuMs: number;
  /** Calls of the frames made (less those dropped) per application index (only when asked for totals). */
  calls?: number[];
  times?: RevisionTimes;
}

export type WorkerMessage = Progress | Report;

const send = (message: WorkerMessage) => process.send?.(message);

type Frame = ReturnType<typeof statsFrame>['frame'];
/** A frame the agent holds, its calls, and how often it was emitted. */
type Held = { frame: Frame; calls: number; sends: number };

interface Agent extends RuleHolder {
  app: number;
  instanceId: string;
  run: string;
  keys: EntryKey[];
  /** ms into each second at which this agent sends. */
  phase: number;
  seq: number;
  established: boolean;
  /** Frames to send, in seq order (new, refused, or in flight when a session ended). */
  waiting: Held[];
  inFlight: Map<number, Held>;
  /** Nothing is sent before this (ms since the epoch): set by a refusal. */
  heldUntil: number;
  /** Frames dropped since the last frame made: its `dropped`. */
  unreported: number;
}

/** Frames an agent holds at most (docs/agent-protocol.md). */
const MAX_HELD = 600;

const counters = {
  made: 0,
  sent: 0,
  resent: 0,
  dropped: 0,
  acksAccepted: 0,
  acksRefused: 0,
  errorFrames: 0,
  ...noRuleCounters(),
  ...noConnectionCounters(),
};
const log = new RevisionLog();
const agents: Agent[] = [];
let active = 0;
let calls: number[] = [];

const bySeq = (list: { frame: Frame }[], seq: number) => {
  let i = list.length;
  while (i > 0 && list[i - 1]!.frame.seq > seq) i--;
  return i;
};

function flush(agent: Agent, now: number): void {
  if (!agent.established || now < agent.heldUntil || agent.waiting.length === 0) return;
  for (const item of agent.waiting) {
    agent.socket.emit('stats', item.frame);
    agent.inFlight.set(item.frame.seq, item);
    counters.sent += 1;
    if (item.sends++ > 0) counters.resent += 1;
  }
  agent.waiting = [];
}

function startAgent(command: StartCommand, index: number, rnd: () => number): Agent {
  const app = index % command.apps;
  const socket = agentSocket(command.urls[index % command.urls.length]!, command.token);
  const agent: Agent = {
    socket,
    app,
    instanceId: `${command.prefix}-i${index}`,
    run: newRun(),
    keys: instanceKeys(command.prefix, app, command.apps, command.seed * 1_000_003 + index),
    phase: rnd() * 1_000,
    seq: 0,
    revision: 0,
    rules: new Map(),
    connected: false,
    established: false,
    waiting: [],
    inFlight: new Map(),
    heldUntil: 0,
    unreported: 0,
  };
  keepConnected(
    agent,
    counters,
    () => ({
      application: appName(command.prefix, app),
      instanceId: agent.instanceId,
      run: agent.run,
      capabilities: ['limit', 'http-inbound', 'http-outbound'],
      heldRevision: agent.revision,
    }),
    () => {
      agent.established = false;
    },
  );
  socket.onAny(
    (event: string, frame: { heartbeatMs?: number; seq?: number; accepted?: boolean; code?: string; message?: string }) => {
      switch (event) {
        case 'welcome':
          agent.established = true;
          // Frames in flight may have been lost with the previous session: they go again, first.
          for (const item of agent.inFlight.values()) agent.waiting.splice(bySeq(agent.waiting, item.frame.seq), 0, item);
          agent.inFlight.clear();
          agent.heldUntil = 0;
          startHeartbeat(agent, frame.heartbeatMs ?? 10_000, () => agent.revision);
          return;
        case 'snapshot':
        case 'delta': {
          if (!command.rules) return;
          const arrived = wallNow();
          const message = parseServerFrame(event, frame, counters);
          if (message) applyRuleFrame(agent, message, arrived, counters, log);
          return;
        }
        case 'stats-ack': {
          const item = agent.inFlight.get(frame.seq ?? 0);
          if (frame.accepted === true) {
            counters.acksAccepted += 1;
            agent.inFlight.delete(frame.seq ?? 0);
          } else {
            counters.acksRefused += 1;
            if (item) {
              agent.inFlight.delete(item.frame.seq);
              agent.waiting.splice(bySeq(agent.waiting, item.frame.seq), 0, item);
              agent.heldUntil = Date.now() + 1_000;
            }
          }
          return;
        }
        case 'error':
          counters.errorFrames += 1;
          counters.lastError = `error frame: ${frame.code}: ${frame.message}`;
          return;
        default:
          return;
      }
    },
  );
  return agent;
}

/**
 * One timer for all agents: agents sorted by phase; in wall second S, the agent of phase p makes at
 * S·1000 + p the frame of second S − 1 (if it is one of the `active`), and sends what it has to
 * send. A worker that falls behind catches up (its agents' frames are late, not lost), as an agent
 * process would.
 */
function schedule(pool: readonly EntryBody[], rnd: () => number): void {
  const order = agents.map((_, i) => i).sort((a, b) => agents[a]!.phase - agents[b]!.phase);
  let cursorSecond = Math.floor(Date.now() / 1_000) + 1;
  let cursor = 0;
  setInterval(() => {
    const now = Date.now();
    while (order.length > 0 && cursorSecond * 1_000 + agents[order[cursor]!]!.phase <= now) {
      const local = order[cursor]!;
      const agent = agents[local]!;
      if (local < active) {
        agent.seq += 1;
        const made = statsFrame(agent.seq, cursorSecond - 1, agent.keys, pool, rnd);
        made.frame.dropped = agent.unreported;
        agent.unreported = 0;
        agent.waiting.push({ ...made, sends: 0 });
        counters.made += 1;
        calls[agent.app]! += made.calls;
        if (agent.waiting.length + agent.inFlight.size > MAX_HELD) {
          const lost = agent.waiting.shift()!;
          calls[agent.app]! -= lost.calls;
          counters.dropped += 1;
          agent.unreported += 1;
        }
      }
      flush(agent, now);
      cursor += 1;
      if (cursor === order.length) {
        cursor = 0;
        cursorSecond += 1;
      }
    }
  }, 5);
}

function snapshot(): Counters {
  let connected = 0;
  let established = 0;
  let held = 0;
  for (const agent of agents) {
    if (agent.connected) connected += 1;
    if (agent.established) established += 1;
    held += agent.waiting.length + agent.inFlight.size;
  }
  return { ...counters, connected, established, held, applied: appliedRevisions(agents) };
}

process.on('message', (command: ParentCommand) => {
  switch (command.type) {
    case 'start': {
      calls = new Array<number>(command.apps).fill(0);
      const rnd = prng(command.seed + command.first);
      // Entry bodies (counters and histograms) from a pool: drawing latencies for every frame would cost more than sending it.
      const pool = bodyPool(512, command.seed * 7_919 + command.first);
      checkWorkload(instanceKeys(command.prefix, 0, command.apps, command.seed), pool);
      startGradually(
        command.count,
        command.connectsPerSec,
        (k) => agents.push(startAgent(command, command.first + k, rnd)),
        () => schedule(pool, rnd),
      );
      setInterval(() => send({ type: 'progress', ...snapshot() }), 500).unref();
      return;
    }
    case 'send':
      active = command.active;
      return;
    case 'report': {
      const cpu = process.cpuUsage();
      send({
        type: 'report',
        id: command.id,
        ...snapshot(),
        cpuMs: (cpu.user + cpu.system) / 1_000,
        ...(command.totals ? { calls } : {}),
        ...(command.revision !== undefined ? { times: log.of(command.revision) } : {}),
      });
      return;
    }
    case 'stop':
      active = 0;
      stopAndExit(agents);
      return;
  }
});
process.on('disconnect', () => process.exit(0));
