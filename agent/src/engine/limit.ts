import { type Rule } from '../../../src/agent-protocol/rules.js';
import { type Answer } from './types.js';

export type LimitSpec = Extract<Rule, { kind: 'limit' }>['limit'];

/** What Limiter.acquire returns for a rejected call; otherwise it returns the wait in ms (0: now). */
export const REJECT = -1;

/**
 * perCaller: at most this many callers get their own bucket or counter per rule; callers beyond
 * share the unknown-caller one, so hostile or numerous caller names cannot grow memory without bound.
 */
export const MAX_CALLERS = 1_000;

/**
 * One bucket (qps) or one counter of calls in flight (concurrency), docs/rules.md "limit". One class
 * for both modes keeps the engine's call sites monomorphic.
 */
export class Limiter {
  readonly concurrency: boolean;
  private readonly permitsPerSec: number;
  private readonly burst: number;
  /** -1 without a queue, so no wait qualifies. */
  private readonly maxWaitMs: number;
  /** 0 without warm-up. */
  private readonly periodSec: number;
  private readonly coldFactor: number;
  private readonly maxConcurrent: number;

  private tokens = 0;
  private last = 0;
  private warm = 0;
  private second = 0;
  private offered = 0;
  /** Calls in flight (concurrency). */
  inFlight = 0;

  constructor(
    spec: LimitSpec,
    /** The rule's rejection, reason `limited`. */
    readonly answer: Answer,
    now: number,
  ) {
    this.concurrency = spec.mode === 'concurrency';
    this.maxConcurrent = spec.mode === 'concurrency' ? spec.maxConcurrent : 0;
    this.permitsPerSec = spec.mode === 'qps' ? spec.permitsPerSec : 0;
    this.burst = spec.mode === 'qps' ? spec.burst : 0;
    this.maxWaitMs = spec.mode === 'qps' && spec.queue ? spec.queue.maxWaitMs : -1;
    this.periodSec = spec.mode === 'qps' && spec.warmUp ? spec.warmUp.periodSec : 0;
    this.coldFactor = spec.mode === 'qps' && spec.warmUp ? spec.warmUp.coldFactor : 1;
    if (this.concurrency) return;
    // Applied: a full bucket; with warm-up the rule starts cold and its capacity is the cold one.
    this.second = Math.floor(now / 1000);
    this.tokens = this.periodSec > 0 ? this.capacity(this.rate()) : this.burst;
    this.last = now;
  }

  /** REJECT, or the wait in ms before the call may proceed (0: at once). */
  acquire(now: number): number {
    if (this.concurrency) {
      if (this.inFlight >= this.maxConcurrent) return REJECT;
      this.inFlight++;
      return 0;
    }
    let rate = this.permitsPerSec;
    let capacity = this.burst;
    if (this.periodSec > 0) {
      this.stepWarmth(now);
      rate = this.rate();
      capacity = this.capacity(rate);
    }
    // docs/rules.md "qps: token bucket", in the written order (both agents compute the same doubles).
    // Within one ms the refill is 0 and tokens ≤ capacity already (warmth changes only with the
    // second), so the step is skipped: busy limits see many calls per ms.
    let tokens = this.tokens;
    if (now !== this.last) {
      tokens = Math.min(capacity, tokens + ((now - this.last) * rate) / 1000);
      this.last = now;
    }
    if (tokens >= 1) {
      this.tokens = tokens - 1;
      return 0;
    }
    const waitMs = Math.ceil(((1 - tokens) * 1000) / rate);
    if (waitMs <= this.maxWaitMs) {
      // Reserved: the bucket goes negative and the calls behind this one wait longer.
      this.tokens = tokens - 1;
      return waitMs;
    }
    this.tokens = tokens;
    return REJECT;
  }

  /** Gives back a concurrency slot; a qps limit keeps its token. */
  release(): void {
    if (this.concurrency) this.inFlight--;
  }

  /** docs/rules.md "qps: warm-up": closes the seconds passed since the last call, counts this one. */
  private stepWarmth(now: number): void {
    const s = Math.floor(now / 1000);
    if (s > this.second) {
      this.warm =
        this.offered >= this.permitsPerSec / this.coldFactor
          ? Math.min(this.periodSec, this.warm + 1)
          : Math.max(0, this.warm - 1);
      this.warm = Math.max(0, this.warm - (s - this.second - 1));
      this.second = s;
      this.offered = 0;
    }
    this.offered += 1;
  }

  private rate(): number {
    return this.permitsPerSec * (1 / this.coldFactor + ((1 - 1 / this.coldFactor) * this.warm) / this.periodSec);
  }

  private capacity(rate: number): number {
    return Math.max(1, (this.burst * rate) / this.permitsPerSec);
  }
}

/** The run-time state of one limit rule: one Limiter, or one per caller with perCaller. */
export class LimitState {
  /** Every call's limiter, or with perCaller the unknown (and overflowing) callers' one. */
  private readonly shared: Limiter;
  private readonly byCaller: Map<string, Limiter> | undefined;

  constructor(
    private readonly spec: LimitSpec,
    private readonly answer: Answer,
    now: number,
  ) {
    this.shared = new Limiter(spec, answer, now);
    if (spec.perCaller) this.byCaller = new Map();
  }

  /** The limiter of a caller ('' unknown); a new caller's bucket starts full, as if the rule had just been applied. */
  limiterFor(caller: string, now: number): Limiter {
    if (this.byCaller === undefined || caller === '') return this.shared;
    let limiter = this.byCaller.get(caller);
    if (limiter === undefined) {
      if (this.byCaller.size >= MAX_CALLERS) return this.shared;
      limiter = new Limiter(this.spec, this.answer, now);
      this.byCaller.set(caller, limiter);
    }
    return limiter;
  }

  get callers(): number {
    return this.byCaller?.size ?? 0;
  }
}
