import type { ServerResponse } from 'node:http';
import { INBOUND, type Answer, type Call, type Direction, type Engine } from '../engine/index.js';
import type { CallRecorder, CallSite } from './records.js';
import { newTraceId, type RequestContext } from './trace.js';

/** What the interception layer needs from the agent. */
export interface Gate {
  /** False once the agent is stopped: every call goes through untouched. */
  readonly active: boolean;
  readonly application: string;
  readonly engine: Pick<Engine, 'enter' | 'epochOffsetMs'>;
  readonly recorder: CallRecorder;
  /** An internal error: counted, logged once per kind; the call it happened in goes through unguarded. */
  fault(kind: string, error: unknown): void;
}

/** A call the agent answered at once: recorded (blocked) while the second's cap allows. */
export function recordAnswered(gate: Gate, answer: Answer, site: () => CallSite): void {
  try {
    if (gate.recorder.keepsBlocked()) gate.recorder.answered(site(), answer, 0, Date.now());
  } catch (error) {
    gate.fault('record', error);
  }
}

/**
 * One admitted or waiting call, and what its call record needs. Call objects are pooled by the
 * engine, so the reference is dropped the moment the call is over (exited, or answered by resume()):
 * a late event can never exit it twice, nor touch the call of a later request.
 */
export class Flight implements CallSite {
  constructor(
    private call: Call | null,
    private readonly gate: Gate,
    readonly direction: Direction = INBOUND,
    readonly remote = '',
    readonly method = 'GET',
    readonly target = '/',
    readonly headers: unknown = undefined,
    readonly context: RequestContext | undefined = undefined,
    /** Outbound: the trace id the request carries; inbound: undefined, the context's. */
    private readonly trace: string | undefined = undefined,
  ) {}

  get traceId(): string {
    return this.trace ?? this.context?.traceId ?? newTraceId();
  }

  /**
   * After the wait: null = make the call, an Answer = answer with it, undefined = already over.
   * Runs in timer callbacks, where a throw would reach the application: a fault lets the call go.
   */
  resume(): Answer | null | undefined {
    const call = this.call;
    if (call === null) return undefined;
    try {
      const startedAt = call.startedAt;
      const waited = call.waitMs;
      const answer = call.resume();
      if (answer !== null) {
        this.call = null;
        const gate = this.gate;
        if (gate.recorder.keepsBlocked()) gate.recorder.answered(this, answer, waited, startedAt + gate.engine.epochOffsetMs);
      }
      return answer;
    } catch (error) {
      this.call = null;
      this.gate.fault('resume', error);
      return null;
    }
  }

  /**
   * Completion, exactly once; while still waiting it only gives back what the call holds. `status`:
   * the HTTP status, 0 without a response. Runs in event listeners: never throws.
   */
  exit(error: boolean, status = 0): void {
    const call = this.call;
    if (call === null) return;
    this.call = null;
    try {
      const startedAt = call.startedAt;
      const slowMs = call.slowMs;
      const latency = call.exit(error);
      if (latency >= 0) {
        const gate = this.gate;
        gate.recorder.completed(this, error, status, latency, latency > slowMs, startedAt + gate.engine.epochOffsetMs);
      }
    } catch (fault) {
      this.gate.fault('exit', fault);
    }
  }
}

/** Writes an answer as the whole response; Node adds content-length and drops the body of HEAD, 204 and 304. */
export function writeAnswer(res: ServerResponse, answer: Answer): void {
  res.statusCode = answer.status;
  for (const [name, value] of answer.headers) res.setHeader(name, value);
  res.end(answer.body);
}
