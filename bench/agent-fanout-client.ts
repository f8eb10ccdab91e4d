/**
 * One worker process of the push fan-out benchmark (bench/agent-fanout.ts): simulates `count`
 * agents, each a socket.io client of its own (its own Manager and websocket, as separate agent
 * processes would have), speaking protocol 1 as an agent does: hello, every server frame checked
 * with the protocol schema, every pushed rule with parseRule, the set applied whole, ack;
 * heartbeats every `welcome.heartbeatMs` (the rule handling is bench/rule-follower.ts). Records, per
 * agent and revision, when the frame arrived and when the ack was sent (wall clock, sub-millisecond),
 * and answers the parent over IPC.
 *
 * Started by the benchmark as `node --import tsx bench/agent-fanout-client.ts`; not run by hand.
 */
import { randomBytes } from 'node:crypto';
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

export interface Progress extends ConnectionCounters, RuleCounters {
  type: 'progress';
  connected: number;
  /** How many agents hold (have ACKed) each revision. */
  applied: Record<number, number>;
}

export interface RevisionReport extends RevisionTimes {
  type: 'report';
  id: number;
  revision: number;
  /** This process' CPU time (user + system, ms) since the previous report. */
  cpuMs: number;
}

export type WorkerMessage = Progress | RevisionReport;

const send = (message: WorkerMessage) => process.send?.(message);

const log = new RevisionLog();
const stats = { ...noRuleCounters(), ...noConnectionCounters() };
const agents: RuleHolder[] = [];
let cpuMark = process.cpuUsage();

function startAgent(command: StartCommand, index: number): RuleHolder {
  const socket = agentSocket(command.url, command.token);
  const agent: RuleHolder = { socket, revision: 0, rules: new Map(), connected: false };
  const instanceId = `bench-agent-${index}`;
  const run = randomBytes(12).toString('base64url');
  keepConnected(agent, stats, () => ({
    application: command.application,
    instanceId,
    run,
    capabilities: ['limit'],
    heldRevision: agent.revision,
  }));
  socket.onAny((event: string, frame: unknown) => {
    const arrived = wallNow();
    const message = parseServerFrame(event, frame, stats);
    if (message?.type === 'welcome') startHeartbeat(agent, message.heartbeatMs, () => agent.revision);
    else if (message?.type === 'error') stats.lastError = `error frame: ${message.code}: ${message.message}`;
    else if (message) applyRuleFrame(agent, message, arrived, stats, log);
  });
  return agent;
}

function progress(): Progress {
  const connected = agents.reduce((n, agent) => n + (agent.connected ? 1 : 0), 0);
  return { type: 'progress', connected, applied: appliedRevisions(agents), ...stats };
}

process.on('message', (command: ParentCommand) => {
  switch (command.type) {
    case 'start': {
      startGradually(command.count, command.connectsPerSec, (k) => agents.push(startAgent(command, command.first + k)));
      setInterval(() => send(progress()), 500).unref();
      return;
    }
    case 'report': {
      const entry = log.of(command.revision);
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
