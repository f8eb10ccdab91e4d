import type { ServerResponse } from 'node:http';
import type { Answer, Call, Engine } from '../engine/index.js';

/** What the interception layer needs from the agent. */
export interface Gate {
  /** False once the agent is stopped: every call goes through untouched. */
  readonly active: boolean;
  readonly application: string;
  readonly engine: Pick<Engine, 'enter'>;
  /** An internal error: counted, logged once per kind; the call it happened in goes through unguarded. */
  fault(kind: string, error: unknown): void;
}

/**
 * One admitted or waiting call. Call objects are pooled by the engine, so the reference is dropped
 * the moment the call is over (exited, or answered by resume()): a late event can never exit it
 * twice, nor touch the call of a later request.
 */
export class Flight {
  constructor(
    private call: Call | null,
    private readonly gate: Gate,
  ) {}

  /**
   * After the wait: null = make the call, an Answer = answer with it, undefined = already over.
   * Runs in timer callbacks, where a throw would reach the application: a fault lets the call go.
   */
  resume(): Answer | null | undefined {
    const call = this.call;
    if (call === null) return undefined;
    try {
      const answer = call.resume();
      if (answer !== null) this.call = null;
      return answer;
    } catch (error) {
      this.call = null;
      this.gate.fault('resume', error);
      return null;
    }
  }

  /** Completion, exactly once; while still waiting it only gives back what the call holds. Runs in event listeners: never throws. */
  exit(error: boolean): void {
    const call = this.call;
    this.call = null;
    try {
      call?.exit(error);
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
