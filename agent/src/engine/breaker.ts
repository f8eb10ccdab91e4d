import { type Rule } from '../../../src/agent-protocol/rules.js';
import { type Answer, type BreakerState } from './types.js';

export type BreakerSpec = Extract<Rule, { kind: 'breaker' }>['breaker'];
export type BreakerListener = (ruleId: string, state: BreakerState, at: number) => void;

const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;
const STATE_NAMES: readonly BreakerState[] = ['CLOSED', 'OPEN', 'HALF_OPEN'];

/** What Breaker.admit returns for a rejected call; otherwise it returns the admitting phase (≥ 0). */
export const REJECT_OPEN = -1;
export const REJECT_HALF_OPEN = -2;

const BUCKETS = 10;

/**
 * One breaker rule's state machine and window (docs/rules.md "breaker"). There are no timers: every
 * transition happens on a call's arrival or completion. `phase` counts transitions; a call remembers
 * the phase that admitted it, so completions of calls admitted in an earlier phase are ignored.
 */
export class Breaker {
  private readonly errorCount: boolean;
  /** slowCallRatio: calls slower than this are bad; -1 for the error strategies. */
  readonly slowCallMs: number;
  private readonly threshold: number;
  private readonly bucketMs: number;
  private readonly minCalls: number;
  private readonly openMs: number;
  private readonly probes: number;

  private state = CLOSED;
  private phase = 0;
  private openedAt = 0;
  private halfOpenAt = 0;
  private probesAdmitted = 0;
  private probesDone = 0;
  private badProbes = 0;

  // The window: bucket counts in a ring indexed by bucket index mod 10, and running sums over it.
  private readonly totals = new Float64Array(BUCKETS);
  private readonly bads = new Float64Array(BUCKETS);
  /** The bucket index of the newest bucket, its ring slot, and the time its bucket ends. */
  private head = 0;
  private headSlot = 0;
  private headEnd = 0;
  private total = 0;
  private bad = 0;

  constructor(
    readonly ruleId: string,
    spec: BreakerSpec,
    readonly openAnswer: Answer,
    readonly halfOpenAnswer: Answer,
    private readonly listener: BreakerListener | undefined,
    now: number,
  ) {
    this.errorCount = spec.strategy === 'errorCount';
    this.slowCallMs = spec.strategy === 'slowCallRatio' ? spec.slowCallMs : -1;
    this.threshold = spec.threshold;
    this.bucketMs = spec.windowMs / BUCKETS;
    this.minCalls = spec.minCalls;
    this.openMs = spec.openMs;
    this.probes = spec.probes;
    this.emptyWindow(now);
  }

  get stateName(): BreakerState {
    return STATE_NAMES[this.state] ?? 'CLOSED';
  }

  /** A call arrives: its phase (≥ 0) when admitted, else REJECT_OPEN or REJECT_HALF_OPEN. */
  admit(now: number): number {
    if (this.state === CLOSED) return this.phase;
    if (this.state === HALF_OPEN && now >= this.halfOpenAt + this.openMs) this.decideRunningAsBad(now);
    if (this.state === CLOSED) return this.phase;
    if (this.state === OPEN) {
      if (now < this.openedAt + this.openMs) return REJECT_OPEN;
      this.halfOpenAt = now;
      this.probesAdmitted = this.probesDone = this.badProbes = 0;
      this.enter(HALF_OPEN, now);
    }
    if (this.probesAdmitted < this.probes) {
      this.probesAdmitted++;
      return this.phase;
    }
    return REJECT_HALF_OPEN;
  }

  /** A later breaker rejected a call this one admitted: a probe gives its slot back. */
  giveBack(phase: number): void {
    if (phase === this.phase && this.state === HALF_OPEN) this.probesAdmitted--;
  }

  /** A call this breaker admitted in `phase` completed at `now` after `latencyMs`. */
  complete(phase: number, latencyMs: number, error: boolean, now: number): void {
    if (phase !== this.phase) return;
    const bad = this.slowCallMs >= 0 ? latencyMs > this.slowCallMs : error;
    if (this.state === CLOSED) {
      this.record(now, bad);
      // With no bad call in the window neither condition can hold (threshold > 0).
      if (
        this.bad > 0 &&
        this.total >= this.minCalls &&
        (this.errorCount ? this.bad >= this.threshold : this.bad / this.total >= this.threshold)
      ) {
        this.openedAt = now;
        this.enter(OPEN, now);
      }
      return;
    }
    // HALF_OPEN: an OPEN phase admits no call, so this is a probe.
    this.probesDone++;
    if (bad) this.badProbes++;
    if (this.probesDone >= this.probes) this.decide(this.probes, this.badProbes, now);
    else if (now >= this.halfOpenAt + this.openMs) this.decideRunningAsBad(now);
  }

  /** The half-open phase timed out: decided over the probes admitted, those still running counted bad. */
  private decideRunningAsBad(now: number): void {
    this.decide(this.probesAdmitted, this.badProbes + this.probesAdmitted - this.probesDone, now);
  }

  /**
   * Re-open or close over `n` probes. No probe at all (every one given back) re-opens, as
   * Resilience4j's half-open timeout does: nothing showed the callee has recovered.
   */
  private decide(n: number, bad: number, now: number): void {
    const reopen = n === 0 || (this.errorCount ? bad >= Math.min(this.threshold, n) : bad / n >= this.threshold);
    if (reopen) {
      this.openedAt = now;
      this.enter(OPEN, now);
    } else {
      this.emptyWindow(now);
      this.enter(CLOSED, now);
    }
  }

  private emptyWindow(now: number): void {
    this.totals.fill(0);
    this.bads.fill(0);
    this.total = this.bad = 0;
    this.moveHead(Math.floor(now / this.bucketMs));
  }

  private moveHead(index: number): void {
    this.head = index;
    this.headSlot = index % BUCKETS;
    this.headEnd = (index + 1) * this.bucketMs;
  }

  private enter(state: number, now: number): void {
    this.state = state;
    this.phase++;
    this.listener?.(this.ruleId, this.stateName, now);
  }

  /** Records an outcome in the bucket of `now`, discarding the buckets that left the window. */
  private record(now: number, bad: boolean): void {
    if (now >= this.headEnd) this.advance(Math.floor(now / this.bucketMs));
    const slot = this.headSlot;
    this.totals[slot]!++;
    this.total++;
    if (bad) {
      this.bads[slot]!++;
      this.bad++;
    }
  }

  private advance(index: number): void {
    const passed = Math.min(index - this.head, BUCKETS);
    for (let k = 1; k <= passed; k++) {
      const slot = (this.head + k) % BUCKETS;
      this.total -= this.totals[slot]!;
      this.bad -= this.bads[slot]!;
      this.totals[slot] = 0;
      this.bads[slot] = 0;
    }
    this.moveHead(index);
  }
}
