import { LATENCY_BUCKETS, percentileMs } from '../agent-protocol/latency-histogram.js';
import type { StatsEntry } from '../agent-protocol/messages.js';

/**
 * The arithmetic of statistics, dependency-free and pure: merging per-second entries into windows
 * (counters add, histograms add bucket by bucket, maxima take the max), and reading a summary
 * (rates, percentiles) out of a merged window. The aggregator, the queries and the live stream all
 * use these, so a number means the same thing everywhere.
 */

export type Direction = 'inbound' | 'outbound';
export type Protocol = 'http' | 'dubbo';

/** The counters of one call key, as agents send them and as windows store them. */
export type Counters = Omit<StatsEntry, keyof Dimensions | 'histogram'>;

/** The additive counters (everything but the maximum). */
export const ADDITIVE = ['calls', 'successes', 'errors', 'limited', 'broken', 'degraded', 'slow', 'latencySumMs'] as const;

/** One call key's statistics over a window: the shape of a `stats` frame entry and of a rollup entry. */
export type { StatsEntry };

export type Dimensions = Pick<StatsEntry, 'direction' | 'peer' | 'protocol' | 'resource'>;

const SEP = '\u0000';

/** The identity of a call key inside one application's window. */
export function entryKey(e: Dimensions): string {
  return `${e.direction}${SEP}${e.peer}${SEP}${e.protocol}${SEP}${e.resource}`;
}

/** Bucket indices beyond the last bucket (the schema allows up to 511) count in the last one. */
function clampBucket(bucket: number): number {
  return bucket < 0 ? 0 : bucket >= LATENCY_BUCKETS ? LATENCY_BUCKETS - 1 : bucket;
}

/** Counters plus a dense histogram: what merging accumulates into. */
export class Accumulator implements Counters {
  calls = 0;
  successes = 0;
  errors = 0;
  limited = 0;
  broken = 0;
  degraded = 0;
  slow = 0;
  latencySumMs = 0;
  latencyMaxMs = 0;
  readonly histogram = new Float64Array(LATENCY_BUCKETS);

  add(entry: Counters & { histogram: readonly (readonly [number, number])[] }): this {
    for (const field of ADDITIVE) this[field] += entry[field];
    if (entry.latencyMaxMs > this.latencyMaxMs) this.latencyMaxMs = entry.latencyMaxMs;
    for (const [bucket, count] of entry.histogram) this.histogram[clampBucket(bucket)]! += count;
    return this;
  }

  merge(other: Accumulator): this {
    for (const field of ADDITIVE) this[field] += other[field];
    if (other.latencyMaxMs > this.latencyMaxMs) this.latencyMaxMs = other.latencyMaxMs;
    for (let i = 0; i < LATENCY_BUCKETS; i++) this.histogram[i]! += other.histogram[i]!;
    return this;
  }

  counters(): Counters {
    const { calls, successes, errors, limited, broken, degraded, slow, latencySumMs, latencyMaxMs } = this;
    return { calls, successes, errors, limited, broken, degraded, slow, latencySumMs, latencyMaxMs };
  }

  sparseHistogram(): [number, number][] {
    const out: [number, number][] = [];
    for (let i = 0; i < LATENCY_BUCKETS; i++) if (this.histogram[i]! > 0) out.push([i, this.histogram[i]!]);
    return out;
  }

  /** Completed calls: those with a latency (the histogram's total). */
  completed(): number {
    let total = 0;
    for (let i = 0; i < LATENCY_BUCKETS; i++) total += this.histogram[i]!;
    return total;
  }
}

/** Entries summed by call key: what a window accumulates frame by frame. */
export class EntrySums {
  private readonly byKey = new Map<string, { dims: Dimensions; acc: Accumulator }>();

  add(entries: readonly StatsEntry[]): this {
    for (const entry of entries) {
      const key = entryKey(entry);
      let slot = this.byKey.get(key);
      if (!slot) {
        slot = {
          dims: { direction: entry.direction, peer: entry.peer, protocol: entry.protocol, resource: entry.resource },
          acc: new Accumulator(),
        };
        this.byKey.set(key, slot);
      }
      slot.acc.add(entry);
    }
    return this;
  }

  /** One entry per key, sorted by key, so the same entries always give the same document. */
  toEntries(): StatsEntry[] {
    return [...this.byKey.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, { dims, acc }]) => ({ ...dims, ...acc.counters(), histogram: acc.sparseHistogram() }));
  }
}

/** Merges entries by call key (whatever order they come in, the same result). */
export function mergeEntries(lists: Iterable<readonly StatsEntry[]>): StatsEntry[] {
  const sums = new EntrySums();
  for (const list of lists) sums.add(list);
  return sums.toEntries();
}

/** What a window (or a group of entries) amounts to, over `seconds` of wall time. */
export interface Summary {
  calls: number;
  successes: number;
  errors: number;
  limited: number;
  broken: number;
  degraded: number;
  slow: number;
  /** Calls per second over the window. */
  qps: number;
  /** errors / calls (0 without calls). */
  errorRate: number;
  /** Mean latency of completed calls. */
  avgMs: number;
  maxMs: number;
  p50: number;
  p90: number;
  p99: number;
}

const round = (value: number, digits = 6) => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

export function summarize(acc: Accumulator, seconds: number): Summary {
  const completed = acc.completed();
  return {
    calls: acc.calls,
    successes: acc.successes,
    errors: acc.errors,
    limited: acc.limited,
    broken: acc.broken,
    degraded: acc.degraded,
    slow: acc.slow,
    qps: seconds > 0 ? round(acc.calls / seconds) : 0,
    errorRate: acc.calls > 0 ? round(acc.errors / acc.calls) : 0,
    avgMs: completed > 0 ? round(acc.latencySumMs / completed, 3) : 0,
    maxMs: acc.latencyMaxMs,
    p50: percentileMs(acc.histogram, 50, acc.latencyMaxMs),
    p90: percentileMs(acc.histogram, 90, acc.latencyMaxMs),
    p99: percentileMs(acc.histogram, 99, acc.latencyMaxMs),
  };
}

// ---- windows -------------------------------------------------------------------------------------

export const SECOND = 1;
export const MINUTE = 60;
export const HOUR = 3_600;
export type Resolution = typeof SECOND | typeof MINUTE | typeof HOUR;
export const RESOLUTIONS: readonly Resolution[] = [HOUR, MINUTE, SECOND];

/** The start (epoch seconds) of the window of `size` seconds holding `second`. */
export function windowStart(second: number, size: number): number {
  return second - (((second % size) + size) % size);
}

/** The coarsest stored resolution whose windows tile a step (a 90 s step reads seconds: minutes do not tile it). */
export function resolutionForStep(stepSeconds: number): Resolution {
  return RESOLUTIONS.find((r) => stepSeconds >= r && stepSeconds % r === 0) ?? SECOND;
}

/** The coarsest stored resolution whose windows tile [from, to) exactly (epoch seconds). */
export function resolutionForRange(from: number, to: number): Resolution {
  return RESOLUTIONS.find((r) => from % r === 0 && to % r === 0) ?? SECOND;
}

/** `30s`, `5m`, `1h`, `1d` → seconds; undefined when not a step. */
export function parseStep(step: string): number | undefined {
  const match = /^(\d{1,6})([smhd])$/.exec(step);
  if (!match) return undefined;
  const n = Number(match[1]);
  const unit = { s: 1, m: 60, h: 3_600, d: 86_400 }[match[2] as 's' | 'm' | 'h' | 'd'];
  return n > 0 ? n * unit : undefined;
}

// ---- rollup documents ----------------------------------------------------------------------------

/** One `stats` frame as stored: the fact every window is derived from. */
export interface FactDoc {
  /** `<run>:s:<seq>`: a redelivered frame collides here and is not stored twice. */
  _id: string;
  application: string;
  instanceId: string;
  seq: number;
  /** The second the frame covers (agent clock), epoch seconds. */
  second: number;
  /** windowStart(second, 60): the minute window it belongs to. */
  minute: number;
  receivedAt: number;
  dropped: number;
  entries: StatsEntry[];
}

/** A minute or hour window of one application: every fact of the window, merged (`window-book.ts`). */
export interface RollupDoc {
  /** `<application>:<start>`. */
  _id: string;
  application: string;
  /** Window start, epoch seconds. */
  start: number;
  /** Window length in seconds (60 or 3600). */
  size: number;
  /** The hour the window belongs to (an hour window's own start). */
  hour: number;
  /** How many facts (stats frames) the window holds. */
  facts: number;
  /** Distinct instances that reported in the window. */
  instances: number;
  /** Batches agents reported dropping (see docs/stats.md). */
  dropped: number;
  entries: StatsEntry[];
  computedAt: number;
}

export function rollupId(application: string, start: number): string {
  return `${application}:${start}`;
}
