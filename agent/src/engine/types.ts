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
  /** Called on every breaker transition (the agent reports it as a `breaker-state` frame). */
  onBreakerState?: (ruleId: string, state: BreakerState, at: number) => void;
}

/**
 * A call the engine let through steps 1–2 of the evaluation order (docs/rules.md). Calls are pooled:
 * once `exit` (or a rejecting `resume`) has returned, the object belongs to the engine again and may
 * be handed to a later call, so the interception layer must drop its reference.
 */
export interface Call {
  readonly kind: 'call';
  /**
   * > 0: a queueing limit admitted the call after this wait in ms (the longest of the waits); wait,
   * then call resume(). 0: the breakers were evaluated already; proceed.
   */
  readonly waitMs: number;
  /**
   * Step 3 (breakers) after the wait. null: proceed with the call, then exit(); an Answer: answer
   * the call with it (the Call is released; do not call exit).
   */
  resume(): Answer | null;
  /**
   * The call completed; `error` as docs/rules.md "Outcomes" defines it (5xx, no response, a throw).
   * Records breaker outcomes and statistics and releases concurrency slots. A second call is a
   * no-op. Called while still waiting (the caller went away), it only releases the slots.
   */
  exit(error: boolean): void;
}

/** Per-second statistics of one (direction, remote, protocol, verb, path) key, read in drainStats. */
export interface StatsView {
  readonly direction: Direction;
  /** The caller (inbound) or callee (outbound), '' when unknown. */
  readonly remote: string;
  readonly protocol: Protocol;
  /** HTTP method, or Dubbo interface. */
  readonly verb: string;
  /** Normalised HTTP path (docs/rules.md "The request path"), or Dubbo method. */
  readonly name: string;
  /** True for the shared slot of calls whose key did not fit in the engine's bounded cache. */
  readonly overflow: boolean;
  /** Calls made (admitted by every limit and breaker). */
  readonly passed: number;
  /** Calls answered by the agent, per reason; a fallback is counted under its rejecting reason too. */
  readonly limited: number;
  readonly breakerOpen: number;
  readonly breakerHalfOpen: number;
  readonly degradedForced: number;
  readonly fallback: number;
  /** Calls that completed (exit), and how many of them were errors. */
  readonly completed: number;
  readonly errors: number;
  /** Latency of completed calls in ms, from admission to completion. */
  readonly latencySumMs: number;
  readonly latencyMaxMs: number;
  /** Completed calls per latency bucket; `latencyBucketLowerMs(i)` is bucket i's lower bound. */
  readonly latencyHistogram: Uint32Array;
}
