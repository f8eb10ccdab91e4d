import type { StatsEntry as ProtocolStatsEntry } from '../../../src/agent-protocol/messages.js';
/**
 * The enforcement engine's contract with the interception layer. The engine is dependency-free
 * (it imports only the shared rule schema's types and the path-pattern matcher) and decides
 * synchronously; the interception layer turns its answers into HTTP responses or RPC errors.
 */

/** Direction of a call, as rules name it. */
export const INBOUND = 0;
export const OUTBOUND = 1;
export type Direction = typeof INBOUND | typeof OUTBOUND;

/** Protocol of a call. */
export const HTTP = 0;
export const DUBBO = 1;
export type Protocol = typeof HTTP | typeof DUBBO;

/** Why a call was answered by the agent instead of being made (docs/rules.md, "Answers"). */
export type AnswerReason = 'limited' | 'breaker-open' | 'breaker-half-open' | 'degraded-forced' | 'fallback';

/**
 * What a rejected or degraded call gets. Precomputed once per rule when rules are applied (never
 * per call): `headers` already include `x-steward-reason`, `x-steward-rule` and the default
 * content-type, as docs/rules.md prescribes.
 */
export interface Answer {
  readonly kind: 'answer';
  readonly reason: AnswerReason;
  readonly ruleId: string;
  readonly status: number;
  /** Header name/value pairs, lower-case names, in a fixed order. */
  readonly headers: readonly (readonly [string, string])[];
  /** The body as UTF-8 bytes. */
  readonly body: Uint8Array;
  /** Dubbo: the RPC error message (limit/breaker rejections), or undefined for a fallback value. */
  readonly rpcMessage: string | undefined;
  /** Dubbo: the fallback value (degrade), JSON. */
  readonly rpcValue: unknown;
}

/** A monotonic clock in integer milliseconds, read without a system call per request. */
export interface Clock {
  readonly now: number;
}

export type BreakerState = 'CLOSED' | 'OPEN' | 'HALF_OPEN';

export interface EngineOptions {
  /** The agent's own application; rules of other applications never match. */
  application: string;
  clock: Clock;
  /**
   * Added to the clock to get ms since the epoch: statistics are kept per wall-clock second, and
   * call records carry wall-clock times. 0 (the default) when the clock already counts from the epoch.
   */
  epochOffsetMs?: number;
  /** Called on every breaker transition (the agent reports it as a `breaker-state` frame). */
  onBreakerState?: (ruleId: string, state: BreakerState, at: number) => void;
}

/**
 * A call the engine let through steps 1–2 of the evaluation order (docs/rules.md). Calls are pooled:
 * once `exit` (or a rejecting `resume`) has returned, the object belongs to the engine again and may
 * be handed to a later call, so the interception layer must drop its reference (and read what it
 * needs of it before).
 */
export interface Call {
  readonly kind: 'call';
  /**
   * > 0: a queueing limit admitted the call after this wait in ms (the longest of the waits); wait,
   * then call resume(). 0: the breakers were evaluated already; proceed.
   */
  readonly waitMs: number;
  /** When the engine saw the call (enter), on the engine's clock. */
  readonly startedAt: number;
  /** The call counts as slow in the statistics when its latency is greater than this (ms). */
  readonly slowMs: number;
  /**
   * Step 3 (breakers) after the wait. null: proceed with the call, then exit(); an Answer: answer
   * the call with it (the Call is released; do not call exit).
   */
  resume(): Answer | null;
  /**
   * The call completed; `error` as docs/rules.md "Outcomes" defines it (5xx, no response, a throw).
   * Records breaker outcomes and statistics and releases concurrency slots. Called while still
   * waiting (the caller went away), it releases the slots and counts the call as completed then.
   * Returns the call's latency in ms (from enter, queue wait included), or -1 when the call was over
   * already (a second exit is a no-op).
   */
  exit(error: boolean): number;
}

/** What statistics are kept by: one call key (direction, remote, protocol, verb, name). */
export interface StatsKeyView {
  readonly direction: Direction;
  /** The caller (inbound) or callee (outbound); an unnamed callee's `host:port`; '' when unknown. */
  readonly remote: string;
  readonly protocol: Protocol;
  /** HTTP method, or Dubbo interface. */
  readonly verb: string;
  /** Normalised HTTP path (docs/rules.md "The request path"), or Dubbo method. */
  readonly name: string;
  /** True for the shared key of calls whose key did not fit in the engine's bounded cache. */
  readonly overflow: boolean;
}

/**
 * One key's statistics for one second, read in drainStats. Every call is counted once, when it
 * completes or is answered by the agent, in the second it started (`second`), so that
 * `calls = successes + errors + limited + broken + forced` holds in every view.
 */
export interface StatsView {
  readonly key: StatsKeyView;
  /** The wall-clock second (since the epoch) the calls started in. */
  readonly second: number;
  readonly calls: number;
  /** Completed without error. */
  readonly successes: number;
  /** Completed with an error (docs/rules.md "Outcomes"). */
  readonly errors: number;
  /** Rejected by a limit (answered with its rejection or a fallback). */
  readonly limited: number;
  /** Rejected by a breaker, open or half-open (answered with its rejection or a fallback). */
  readonly broken: number;
  /** Answered with a degrade rule's fallback: forced, or replacing a limit's or breaker's rejection. */
  readonly degraded: number;
  /** Answered by a forced degrade rule (a part of `degraded`; not made, not limited, not broken). */
  readonly forced: number;
  /** Completed calls slower than the key's slow threshold. */
  readonly slow: number;
  /** Latency of completed calls in ms, from enter (queue wait included) to completion. */
  readonly latencySumMs: number;
  readonly latencyMaxMs: number;
  /** Completed calls per latency bucket of src/agent-protocol/latency-histogram.ts. */
  readonly latencyHistogram: Uint32Array;
}

/** One entry of a `stats` frame (StatsEntrySchema in src/agent-protocol/messages.ts). */
export type StatsEntry = ProtocolStatsEntry;

/** The entries of one second, merged by (direction, peer, protocol, resource). */
export interface SecondStats {
  second: number;
  entries: StatsEntry[];
}
