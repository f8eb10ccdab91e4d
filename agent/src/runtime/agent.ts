import { randomBytes } from 'node:crypto';
import { Engine, TickerClock } from '../engine/index.js';
import { AnswerServer } from './answer-server.js';
import type { AgentConfig } from './config.js';
import { patchInbound, type InboundGate } from './inbound.js';
import { Faults, type Logger } from './log.js';
import { Peers } from './names.js';
import { patchOutbound, type OutboundGate } from './outbound.js';
import { CallRecorder } from './records.js';
import { Reporter } from './reporter.js';
import { RuleSet } from './rule-set.js';
import { MAX_PORTS, Session } from './session.js';
import { StateStore } from './state-store.js';
import { setTracePropagation } from './trace.js';

/** How far the engine's mapping of its monotonic clock to the wall clock may drift before it is corrected. */
const MAX_CLOCK_DRIFT_MS = 100;

/** Wall clock minus the engine's clock (TickerClock: performance.now() in whole ms). */
function epochOffset(): number {
  return Math.round(Date.now() - performance.now());
}

/** Where the running agent's handle lives: one per process, whichever copy of the agent got there first. */
export const HANDLE = Symbol.for('steward.agent');

export interface AgentStatus {
  enabled: boolean;
  /** Why the agent is not running, when it is not. */
  reason?: string;
  connected: boolean;
  appliedRevision: number;
  internalErrors: number;
  invalidFrames: number;
  reconnects: number;
  ports: number[];
  peers: number;
  /** Statistics and call-record frames: sent, kept (waiting to be sent or acknowledged), dropped (buffer full). */
  stats: { sent: number; buffered: number; dropped: number };
  records: { sent: number; buffered: number; dropped: number; skipped: number };
}

export interface AgentHandle {
  readonly engine: Engine | undefined;
  status(): AgentStatus;
  stop(): void;
}

/** The handle of an agent that did not start (disabled or misconfigured). */
export function inertHandle(reason: string): AgentHandle {
  const status: AgentStatus = {
    enabled: false,
    reason,
    connected: false,
    appliedRevision: 0,
    internalErrors: 0,
    invalidFrames: 0,
    reconnects: 0,
    ports: [],
    peers: 0,
    stats: { sent: 0, buffered: 0, dropped: 0 },
    records: { sent: 0, buffered: 0, dropped: 0, skipped: 0 },
  };
  return { engine: undefined, status: () => structuredClone(status), stop: () => undefined };
}

/**
 * The agent: the engine, the rules it enforces (restored from disk first), the session that keeps
 * them current, and the interception of Node's HTTP stack that puts the engine in front of calls.
 */
export class Agent implements InboundGate, OutboundGate {
  active = false;
  readonly application: string;
  readonly engine: Engine;
  readonly answers: AnswerServer;
  readonly recorder: CallRecorder;
  private readonly clock = new TickerClock();
  private readonly faults: Faults;
  private readonly peers = new Peers();
  private readonly ports = new Set<number>();
  private readonly rules: RuleSet;
  private readonly session: Session;
  private readonly reporter: Reporter;

  constructor(config: AgentConfig, log: Logger) {
    this.application = config.application;
    this.faults = new Faults(log);
    this.engine = new Engine({
      application: config.application,
      clock: this.clock,
      epochOffsetMs: epochOffset(),
      // The engine's clock is monotonic; the frame carries wall-clock time.
      onBreakerState: (ruleId, state, at) => {
        try {
          this.session.breakerState(ruleId, state, Math.round(performance.timeOrigin + at));
        } catch (error) {
          this.fault('breaker-state', error);
        }
      },
    });
    this.rules = new RuleSet(this.engine, new StateStore(config.stateDir, config.application, log), log);
    this.answers = new AnswerServer((error) => this.fault('answer-server', error));
    this.session = new Session({
      serverUrl: config.serverUrl,
      token: config.token,
      application: config.application,
      instanceId: config.instanceId,
      // New for every agent: its reporter numbers frames from 1, and (instanceId, run, seq) must name one frame.
      run: randomBytes(12).toString('base64url'),
      host: config.host,
      rules: this.rules,
      peers: this.peers,
      ports: () => [...this.ports],
      log,
      faults: this.faults,
      onEstablished: () => this.reporter.resend(),
      onStatsAck: (ack) => this.reporter.acknowledge(ack.kind, ack.seq, ack.accepted),
    });
    setTracePropagation(config.tracePropagation);
    this.recorder = new CallRecorder({
      application: config.application,
      sample: config.recordSample,
      headers: config.recordHeaders,
    });
    this.reporter = new Reporter({
      engine: this.engine,
      recorder: this.recorder,
      send: (frame) => this.session.sendReport(frame),
      faults: this.faults,
      beforeTick: () => {
        // The monotonic clock and the wall clock drift apart (NTP): keep seconds on the wall clock.
        const offset = epochOffset();
        if (Math.abs(offset - this.engine.epochOffsetMs) > MAX_CLOCK_DRIFT_MS) this.engine.setEpochOffset(offset);
      },
    });
  }

  /** Enforces the saved rules, then guards Node's HTTP stack, then connects: the app is guarded before its first call. */
  start(): void {
    this.clock.start();
    this.rules.restore();
    this.active = true;
    try {
      patchInbound(this);
      patchOutbound(this);
      this.session.start();
      this.reporter.start();
    } catch (error) {
      this.stop();
      throw error;
    }
  }

  /** Stops guarding (the patches stay, passing everything through) and closes the session. */
  stop(): void {
    this.active = false;
    this.reporter.stop();
    this.session.stop();
    this.answers.stop();
    this.clock.stop();
  }

  handle(): AgentHandle {
    return { engine: this.engine, status: () => this.status(), stop: () => this.stop() };
  }

  status(): AgentStatus {
    return {
      enabled: this.active,
      connected: this.session.connected,
      appliedRevision: this.rules.revision,
      internalErrors: this.faults.count,
      invalidFrames: this.session.invalidFrames,
      reconnects: this.session.reconnects,
      ports: [...this.ports],
      peers: this.peers.size,
      stats: { sent: this.reporter.stats.sent, buffered: this.reporter.stats.buffered, dropped: this.reporter.stats.dropped },
      records: {
        sent: this.reporter.records.sent,
        buffered: this.reporter.records.buffered,
        dropped: this.reporter.records.dropped,
        skipped: this.recorder.skipped,
      },
    };
  }

  fault(kind: string, error: unknown): void {
    this.faults.record(kind, error);
  }

  calleeOf(host: string, port: number): string {
    return this.peers.calleeOf(host, port);
  }

  isOwn(agent: unknown): boolean {
    return agent === this.session.transportAgent;
  }

  portOpened(port: number): void {
    if (this.ports.has(port) || this.ports.size >= MAX_PORTS) return;
    this.ports.add(port);
    this.session.listening([...this.ports]);
  }

  portClosed(port: number): void {
    if (this.ports.delete(port)) this.session.listening([...this.ports]);
  }
}
