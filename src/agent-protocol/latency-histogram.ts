/**
 * The latency histogram agents send and the server merges: fixed log-linear buckets over integer
 * milliseconds, so histograms from any agent, second or instance merge by adding counts, and both
 * agents (Node, Java) compute the same index for the same latency. Dependency-free.
 *
 * Buckets 0–15 hold exactly 0–15 ms. From 16 ms on, each power of two is split in 8 equal
 * buckets: the relative error of a percentile read from a bucket is below 12.5 %. The last
 * bucket holds everything from 2^31 ms on.
 */

const LINEAR = 16;
const SUB_BITS = 3;
const SUB = 1 << SUB_BITS;
const FIRST_EXPONENT = 4; // 2^4 = LINEAR
const LAST_EXPONENT = 31;
const LAST_LOWER_MS = 2 ** LAST_EXPONENT;

/** How many buckets a histogram has. */
export const LATENCY_BUCKETS = LINEAR + (LAST_EXPONENT - FIRST_EXPONENT) * SUB + 1;

/** The bucket of a latency in ms (negative counts as 0, fractions are truncated). */
export function latencyBucket(ms: number): number {
  const v = ms > 0 ? Math.floor(ms) : 0;
  if (v < LINEAR) return v;
  // Before clz32, which reads its argument modulo 2^32: 2^32 ms and more (and Infinity) are the last bucket too.
  if (v >= LAST_LOWER_MS) return LATENCY_BUCKETS - 1;
  const exponent = 31 - Math.clz32(v);
  const sub = (v >>> (exponent - SUB_BITS)) & (SUB - 1);
  return LINEAR + (exponent - FIRST_EXPONENT) * SUB + sub;
}

/** The smallest latency (ms) a bucket holds. */
export function bucketLowerMs(index: number): number {
  if (index < LINEAR) return index;
  const exponent = FIRST_EXPONENT + Math.floor((index - LINEAR) / SUB);
  const sub = (index - LINEAR) % SUB;
  return 2 ** exponent + sub * 2 ** (exponent - SUB_BITS);
}

/** The largest latency (ms) a bucket holds (the last bucket is unbounded). */
export function bucketUpperMs(index: number): number {
  return index >= LATENCY_BUCKETS - 1 ? Infinity : bucketLowerMs(index + 1) - 1;
}

/**
 * The latency at percentile `p` (0–100) of a histogram given as bucket counts, read as the upper
 * bound of the bucket holding it (capped by `maxMs` when known), so it never under-states.
 */
export function percentileMs(counts: ArrayLike<number>, p: number, maxMs = Infinity): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) total += counts[i] ?? 0;
  if (total === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i] ?? 0;
    if (seen >= rank) return Math.min(bucketUpperMs(i), maxMs);
  }
  return maxMs;
}
