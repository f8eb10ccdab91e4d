import { type Direction, type Protocol, type StatsView } from './types.js';

/**
 * Latency histogram: 4 linear sub-buckets per power of two (a bucket spans at most 25 % of its
 * value), exact below 4 ms, everything from 2^26 ms (about 18 hours) in the last bucket.
 */
const SUB_BUCKET_BITS = 2;
const SUB_BUCKETS = 1 << SUB_BUCKET_BITS;
const MAX_EXPONENT = 26;
export const LATENCY_BUCKETS = SUB_BUCKETS * (MAX_EXPONENT - SUB_BUCKET_BITS + 1) + 1;

/** The bucket of a latency in integer ms. */
export function latencyBucket(ms: number): number {
  if (ms < SUB_BUCKETS) return ms < 0 ? 0 : ms;
  if (ms >= 2 ** MAX_EXPONENT) return LATENCY_BUCKETS - 1;
  const exponent = 31 - Math.clz32(ms);
  const sub = (ms >>> (exponent - SUB_BUCKET_BITS)) & (SUB_BUCKETS - 1);
  return SUB_BUCKETS * (exponent - SUB_BUCKET_BITS + 1) + sub;
}

/** The smallest latency (ms) that falls into bucket `i`. */
export function latencyBucketLowerMs(i: number): number {
  if (i < SUB_BUCKETS) return i;
  const exponent = Math.floor(i / SUB_BUCKETS) + SUB_BUCKET_BITS - 1;
  return 2 ** exponent + (i % SUB_BUCKETS) * 2 ** (exponent - SUB_BUCKET_BITS);
}

/** The counters of one key for the current second; recording only increments fields. */
export class StatsSlot implements StatsView {
  passed = 0;
  limited = 0;
  breakerOpen = 0;
  breakerHalfOpen = 0;
  degradedForced = 0;
  fallback = 0;
  completed = 0;
  errors = 0;
  latencySumMs = 0;
  latencyMaxMs = 0;
  readonly latencyHistogram = new Uint32Array(LATENCY_BUCKETS);

  constructor(
    readonly direction: Direction,
    readonly remote: string,
    readonly protocol: Protocol,
    readonly verb: string,
    readonly name: string,
    readonly overflow = false,
  ) {}

  recordCompletion(latencyMs: number, error: boolean): void {
    this.completed++;
    if (error) this.errors++;
    this.latencySumMs += latencyMs;
    if (latencyMs > this.latencyMaxMs) this.latencyMaxMs = latencyMs;
    this.latencyHistogram[latencyBucket(latencyMs)]!++;
  }

  isEmpty(): boolean {
    return (
      this.passed +
        this.limited +
        this.breakerOpen +
        this.breakerHalfOpen +
        this.degradedForced +
        this.fallback +
        this.completed ===
      0
    );
  }

  reset(): void {
    this.passed = this.limited = this.breakerOpen = this.breakerHalfOpen = this.degradedForced = this.fallback = 0;
    this.completed = this.errors = this.latencySumMs = this.latencyMaxMs = 0;
    this.latencyHistogram.fill(0);
  }
}
