import { LATENCY_BUCKETS, latencyBucket } from '../../../src/agent-protocol/latency-histogram.js';
import { type Direction, type Protocol, type StatsKeyView, type StatsView } from './types.js';

/**
 * Per-second call statistics. Each call key (a cached Chain, or one of the shared overflow keys)
 * has a StatsKey holding the slot of the latest second it saw calls in. A call remembers the slot
 * of the second it started in and adds its counters there when it completes (or at once when the
 * agent answers it), so every call is counted once, in its start second, whenever it ends.
 *
 * Slots are pooled: when a key's first call of a new second arrives, its old slot is parked (it
 * still has counters to drain, or calls in flight) and a free one takes its place; drained slots
 * without calls in flight go back to the pool. In the steady state nothing is allocated.
 */

/** Without a slow-call breaker matching it, a call is slow above this (StatsEntrySchema `slow`). */
export const DEFAULT_SLOW_MS = 1_000;
/** Free slots kept for reuse at most; more are left to the garbage collector. */
const MAX_FREE = 1_024;
/**
 * Parked slots waiting for their calls to complete, at most, and how long they wait (s). A call
 * still running when its slot stops waiting (it ran for more than MAX_WAIT_SEC, or hundreds of keys
 * have calls that never complete) is counted in the second it completes in instead.
 */
export const MAX_PARKED = 1_000;
export const MAX_WAIT_SEC = 300;

/** A call key's statistics: the key, and the slot of its latest second (null while idle). */
export class StatsKey implements StatsKeyView {
  slot: StatsSlot | null = null;
  /** The key's `resource` in stats frames, computed once, when first drained. */
  resource: string | undefined = undefined;

  constructor(
    readonly direction: Direction,
    readonly remote: string,
    readonly protocol: Protocol,
    readonly verb: string,
    readonly name: string,
    readonly overflow = false,
  ) {}
}

/** The counters of one key for one second; recording only increments fields. */
export class StatsSlot implements StatsView {
  key: StatsKey;
  second = -1;
  /** Calls started in this second and not over yet: the slot cannot be reused while there are any. */
  inFlight = 0;
  /** No longer drained: calls still in flight count in their key's current slot when they end. */
  abandoned = false;
  calls = 0;
  successes = 0;
  errors = 0;
  limited = 0;
  broken = 0;
  degraded = 0;
  forced = 0;
  slow = 0;
  latencySumMs = 0;
  latencyMaxMs = 0;
  readonly latencyHistogram = new Uint32Array(LATENCY_BUCKETS);

  constructor(key: StatsKey) {
    this.key = key;
  }

  /** A call completed after `latencyMs` (integer). */
  complete(latencyMs: number, error: boolean, slowMs: number): void {
    this.calls++;
    if (error) this.errors++;
    else this.successes++;
    if (latencyMs > slowMs) this.slow++;
    this.latencySumMs += latencyMs;
    if (latencyMs > this.latencyMaxMs) this.latencyMaxMs = latencyMs;
    this.latencyHistogram[latencyBucket(latencyMs)]!++;
  }

  /** Rejected by a limit; `fallback`: answered with a degrade rule's fallback. */
  rejectLimited(fallback: boolean): void {
    this.calls++;
    this.limited++;
    if (fallback) this.degraded++;
  }

  /** Rejected by a breaker; `fallback`: answered with a degrade rule's fallback. */
  rejectBroken(fallback: boolean): void {
    this.calls++;
    this.broken++;
    if (fallback) this.degraded++;
  }

  /** Answered by a forced degrade rule. */
  degradeForced(): void {
    this.calls++;
    this.degraded++;
    this.forced++;
  }

  reset(): void {
    this.calls = this.successes = this.errors = this.limited = this.broken = this.degraded = this.forced = this.slow = 0;
    this.latencySumMs = this.latencyMaxMs = 0;
    this.latencyHistogram.fill(0);
  }
}

/** The slots of every key: rotation to a new second, the parked ones, and the free pool. */
export class StatsSlots {
  private readonly free: StatsSlot[] = [];
  private readonly parked: StatsSlot[] = [];

  /** Slots in use or parked, for tests and the agent's status. */
  get parkedCount(): number {
    return this.parked.length;
  }

  /** The key's slot for `second`, a later second than its current slot's (called on the key's first call of a second). */
  rotate(key: StatsKey, second: number): StatsSlot {
    const old = key.slot;
    if (old !== null) {
      if (old.calls === 0 && old.inFlight === 0) {
        old.second = second;
        return old;
      }
      this.parked.push(old);
    }
    const slot = this.free.pop() ?? new StatsSlot(key);
    slot.key = key;
    slot.second = second;
    key.slot = slot;
    return slot;
  }

  /** Where a call that started in an abandoned slot is counted: its key's slot of `second`. */
  current(key: StatsKey, second: number): StatsSlot {
    const slot = key.slot;
    return slot !== null && slot.second === second ? slot : this.rotate(key, second);
  }

  /**
   * Visits the key's slot if it holds counters of a second before `before`, then resets it; a slot
   * with no call in flight goes back to the pool. Returns whether the key had calls since the last
   * drain (counters or calls in flight), before draining.
   */
  drainKey(key: StatsKey, before: number, visit: (slot: StatsSlot) => void): boolean {
    const slot = key.slot;
    if (slot === null) return false;
    const active = slot.calls > 0 || slot.inFlight > 0;
    if (slot.second < before) {
      if (slot.calls > 0) {
        visit(slot);
        slot.reset();
      }
      if (slot.inFlight === 0) {
        key.slot = null;
        this.release(slot);
      }
    }
    return active;
  }

  /** A key leaves the engine's cache (it had no calls since the last drain). */
  forget(key: StatsKey): void {
    const slot = key.slot;
    if (slot !== null && slot.calls === 0 && slot.inFlight === 0) {
      key.slot = null;
      this.release(slot);
    }
  }

  /** Drains the parked slots like drainKey; those waiting too long (or too many) stop waiting. */
  drainParked(before: number, now: number, visit: (slot: StatsSlot) => void): void {
    const parked = this.parked;
    let kept = 0;
    for (let i = 0; i < parked.length; i++) {
      const slot = parked[i]!;
      if (slot.second < before && slot.calls > 0) {
        visit(slot);
        slot.reset();
      }
      if (slot.calls === 0 && slot.inFlight === 0) this.release(slot);
      else if (slot.calls === 0 && now - slot.second > MAX_WAIT_SEC) slot.abandoned = true;
      else parked[kept++] = slot;
    }
    parked.length = kept;
    // Oldest first: slots are parked in the order of their seconds.
    let excess = kept - MAX_PARKED;
    for (let i = 0; excess > 0 && i < parked.length; i++) {
      if (parked[i]!.calls === 0) {
        parked[i]!.abandoned = true;
        excess--;
      }
    }
    if (kept > MAX_PARKED) {
      let n = 0;
      for (const slot of parked) if (!slot.abandoned) parked[n++] = slot;
      parked.length = n;
    }
  }

  private release(slot: StatsSlot): void {
    if (this.free.length < MAX_FREE) this.free.push(slot);
  }
}
