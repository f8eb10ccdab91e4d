import { describe, expect, it } from 'vitest';
import { LATENCY_BUCKETS, latencyBucket, percentileMs } from '../../src/agent-protocol/latency-histogram.js';
import {
  Accumulator,
  type FactDoc,
  mergeEntries,
  parseStep,
  resolutionForRange,
  resolutionForStep,
  type StatsEntry,
  summarize,
  windowStart,
} from '../../src/stats/rollup.js';
import { type HourDoc, type MinuteDoc, SeqRanges, WindowBook } from '../../src/stats/window-book.js';

function entry(over: Partial<StatsEntry> & { latencies?: number[] } = {}): StatsEntry {
  const { latencies = [], ...rest } = over;
  const hist = new Map<number, number>();
  for (const ms of latencies) hist.set(latencyBucket(ms), (hist.get(latencyBucket(ms)) ?? 0) + 1);
  return {
    direction: 'inbound',
    peer: '',
    protocol: 'http',
    resource: 'GET /orders/{id}',
    calls: latencies.length,
    successes: latencies.length,
    errors: 0,
    limited: 0,
    broken: 0,
    degraded: 0,
    slow: 0,
    latencySumMs: latencies.reduce((a, b) => a + b, 0),
    latencyMaxMs: Math.max(0, ...latencies),
    histogram: [...hist.entries()].sort((a, b) => a[0] - b[0]),
    ...rest,
  };
}

function fact(instanceId: string, seq: number, second: number, entries: StatsEntry[], dropped = 0): FactDoc {
  return {
    _id: `${instanceId}:s:${seq}`,
    application: 'orders',
    instanceId,
    seq,
    second,
    minute: windowStart(second, 60),
    receivedAt: second * 1000,
    dropped,
    entries,
  };
}

describe('merging entries', () => {
  it('adds counters, takes the max of maxima, adds histograms bucket by bucket', () => {
    const a = entry({ latencies: [1, 2, 3, 100], errors: 1, successes: 3, slow: 1 });
    const b = entry({ latencies: [5, 250], limited: 2, calls: 4 });
    const [merged] = mergeEntries([[a], [b]]);
    expect(merged).toMatchObject({
      calls: 8,
      successes: 5,
      errors: 1,
      limited: 2,
      slow: 1,
      latencySumMs: 361,
      latencyMaxMs: 250,
    });
    const total = merged!.histogram.reduce((n, [, c]) => n + c, 0);
    expect(total).toBe(6);
    expect(merged!.histogram.map(([b]) => b)).toEqual([...merged!.histogram.map(([b]) => b)].sort((x, y) => x - y));
  });

  it('keeps call keys apart and gives the same result whatever the order', () => {
    const keys = [
      entry({ resource: 'GET /a', latencies: [1] }),
      entry({ resource: 'GET /b', latencies: [2] }),
      entry({ direction: 'outbound', peer: 'stock', resource: 'GET /s', latencies: [3] }),
      entry({ protocol: 'dubbo', resource: 'com.x.Api#get', latencies: [4] }),
    ];
    const forward = mergeEntries([keys, keys.slice(0, 2)]);
    const backward = mergeEntries([keys.slice(0, 2).reverse(), [...keys].reverse()]);
    expect(forward).toEqual(backward);
    expect(forward).toHaveLength(4);
    expect(forward.find((e) => e.resource === 'GET /a')!.calls).toBe(2);
  });

  it('merging per-second histograms gives the percentiles of all the latencies together', () => {
    const seconds: number[][] = [];
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 800;
    for (let s = 0; s < 60; s++) seconds.push(Array.from({ length: 50 }, () => Math.floor(rnd())));
    const merged = mergeEntries(seconds.map((l) => [entry({ latencies: l })]))[0]!;
    const all = new Array<number>(LATENCY_BUCKETS).fill(0);
    for (const ms of seconds.flat()) all[latencyBucket(ms)]! += 1;
    const acc = new Accumulator().add(merged);
    for (const p of [50, 90, 99]) expect(summarize(acc, 60)[`p${p}` as 'p50']).toBe(percentileMs(all, p, merged.latencyMaxMs));
    // Never under-states the true percentile (bucket upper bound).
    const sorted = seconds.flat().sort((a, b) => a - b);
    expect(summarize(acc, 60).p99).toBeGreaterThanOrEqual(sorted[Math.ceil(0.99 * sorted.length) - 1]!);
  });

  it('clamps bucket indices beyond the last bucket', () => {
    const acc = new Accumulator().add(entry({ calls: 1, histogram: [[511, 1]], latencyMaxMs: 5 }));
    expect(acc.histogram[LATENCY_BUCKETS - 1]).toBe(1);
    expect(summarize(acc, 1).p99).toBe(5);
  });

  it('summarizes rates over the window length', () => {
    const acc = new Accumulator().add(entry({ latencies: [10, 20, 30, 40], errors: 1, successes: 3 }));
    expect(summarize(acc, 2)).toMatchObject({ calls: 4, qps: 2, errorRate: 0.25, avgMs: 25, maxMs: 40 });
    expect(summarize(new Accumulator(), 60)).toMatchObject({ calls: 0, qps: 0, errorRate: 0, p99: 0 });
  });
});

describe('windows', () => {
  it('finds window starts and resolutions', () => {
    expect(windowStart(125, 60)).toBe(120);
    expect(windowStart(7_199, 3_600)).toBe(3_600);
    expect(resolutionForStep(1)).toBe(1);
    expect(resolutionForStep(90)).toBe(1);
    expect(resolutionForStep(300)).toBe(60);
    expect(resolutionForStep(7_200)).toBe(3_600);
    expect(resolutionForRange(3_600, 7_200)).toBe(3_600);
    expect(resolutionForRange(3_660, 7_200)).toBe(60);
    expect(resolutionForRange(3_661, 7_200)).toBe(1);
    expect(parseStep('5m')).toBe(300);
    expect(parseStep('1d')).toBe(86_400);
    expect(parseStep('0s')).toBeUndefined();
    expect(parseStep('5 m')).toBeUndefined();
  });
});

describe('SeqRanges', () => {
  it('holds each sequence number once, in any order, as few ranges as possible', () => {
    const ranges = new SeqRanges();
    expect([5, 3, 4, 1, 9, 2].map((seq) => ranges.add(seq))).toEqual([true, true, true, true, true, true]);
    expect(ranges.add(4)).toBe(false);
    expect(ranges.ranges()).toEqual([
      [1, 5],
      [9, 9],
    ]);
    expect([0, 1, 5, 6, 8, 9, 10].map((seq) => ranges.has(seq))).toEqual([false, true, true, false, false, true, false]);
    expect(
      SeqRanges.of([
        [7, 9],
        [1, 3],
        [2, 5],
        [6, 6],
        [20, 19],
      ]).ranges(),
    ).toEqual([[1, 9]]);
  });

  it('agrees with a Set over random additions', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return Math.floor((seed / 2 ** 31) * n);
    };
    for (let round = 0; round < 50; round++) {
      const ranges = new SeqRanges();
      const set = new Set<number>();
      for (let i = 0; i < 200; i++) {
        const seq = 1 + rnd(120);
        expect(ranges.add(seq)).toBe(!set.has(seq));
        set.add(seq);
      }
      for (let seq = 0; seq <= 121; seq++) expect(ranges.has(seq)).toBe(set.has(seq));
      const flat = ranges.ranges();
      for (let i = 1; i < flat.length; i++) expect(flat[i]![0]).toBeGreaterThan(flat[i - 1]![1] + 1);
    }
  });
});

describe('WindowBook', () => {
  const frames = [
    fact('i1', 1, 120, [entry({ latencies: [1, 2] })], 1),
    fact('i2', 1, 121, [entry({ latencies: [3] }), entry({ direction: 'outbound', peer: 'stock', latencies: [9] })]),
    fact('i1', 2, 179, [entry({ latencies: [4] })]),
    fact('i1', 3, 185, [entry({ latencies: [5] })]),
  ];
  const NOW = 4_000_000;

  /** A book with every window the facts need, loaded from `stored` (none by default). */
  function bookFor(
    facts: FactDoc[],
    stored = new Map<string, MinuteDoc>(),
    storedHours = new Map<string, HourDoc>(),
  ): WindowBook {
    const book = new WindowBook();
    for (const id of book.missingMinutes(facts)) {
      const f = facts.find((x) => `${x.application}:${x.minute}` === id)!;
      book.installMinute(id, stored.get(id) ?? null, f, 0, NOW);
    }
    for (const id of book.missingHours(facts)) {
      const f = facts.find((x) => `${x.application}:${windowStart(x.minute, 3_600)}` === id)!;
      book.installHour(id, storedHours.get(id) ?? null, f, 0, NOW);
    }
    for (const { hour } of book.staleHours()) book.rebuildHour(hour, stored);
    return book;
  }
  const run = (f: FactDoc) => f._id.split(':s:')[0]!;

  it('a minute is a function of its frames, whatever their order and repetition; an hour is the sum of its minutes', () => {
    const a = bookFor(frames);
    const b = bookFor(frames);
    expect(frames.map((f) => a.merge(f, run(f), NOW))).toEqual(['counted', 'counted', 'counted', 'counted']);
    for (const f of [...frames].reverse().concat(frames)) b.merge(f, run(f), NOW);
    expect(frames.map((f) => a.merge(f, run(f), NOW))).toEqual(['duplicate', 'duplicate', 'duplicate', 'duplicate']);
    const m1 = a.minutes.get('orders:120')!.toDoc(1);
    expect(m1).toEqual(b.minutes.get('orders:120')!.toDoc(1));
    expect(m1).toMatchObject({ _id: 'orders:120', start: 120, size: 60, hour: 0, facts: 3, instances: 2, dropped: 1 });
    expect(m1.frames).toEqual(['i1:1-2', 'i2:1-1']);
    expect(m1.entries.find((e) => e.direction === 'inbound')!.calls).toBe(4);
    const hour = a.hours.get('orders:0')!.toDoc(1);
    expect(hour).toEqual(b.hours.get('orders:0')!.toDoc(1));
    expect(hour).toMatchObject({ _id: 'orders:0', size: 3_600, facts: 4, dropped: 1, instances: 2 });
    expect(hour.entries).toEqual(mergeEntries(frames.map((x) => x.entries)));
  });

  it('recognises frames held by a stored minute; trusts a stored hour that agrees with its minutes', () => {
    const first = bookFor(frames.slice(0, 2));
    for (const f of frames.slice(0, 2)) first.merge(f, run(f), NOW);
    const stored = new Map([['orders:120', first.minutes.get('orders:120')!.toDoc(1)]]);
    const storedHours = new Map([['orders:0', first.hours.get('orders:0')!.toDoc(1)]]);
    expect(storedHours.get('orders:0')!.minuteFacts.slice(0, 4)).toEqual([0, 0, 2, 0]);

    // A new aggregator: the stored minute 120 already holds i1:1 and i2:1, the stored hour agrees.
    const second = bookFor(frames, stored, storedHours);
    expect(second.hours.get('orders:0')!.dirty).toBe(false);
    expect(frames.map((f) => second.merge(f, run(f), NOW))).toEqual(['duplicate', 'duplicate', 'counted', 'counted']);
    const hour = second.hours.get('orders:0')!.toDoc(1);
    expect(hour.facts).toBe(4);
    expect(hour.entries).toEqual(mergeEntries(frames.map((x) => x.entries)));
    expect(
      second
        .dirty(0)
        .minutes.map((m) => m.id)
        .sort(),
    ).toEqual(['orders:120', 'orders:180']);
    expect(second.dirty(1)).toEqual({ minutes: [], hours: [] });
  });

  it('rebuilds an hour that disagrees with a minute (a crash between their writes) from its minutes', () => {
    const first = bookFor(frames.slice(0, 3));
    first.merge(frames[0]!, run(frames[0]!), NOW);
    const oldHour = first.hours.get('orders:0')!.toDoc(1);
    for (const f of frames.slice(1, 3)) first.merge(f, run(f), NOW);
    // The minute was written with three frames; the crash came before the hour's write.
    const stored = new Map([['orders:120', first.minutes.get('orders:120')!.toDoc(1)]]);
    const second = bookFor(frames, stored, new Map([['orders:0', oldHour]]));
    const hour = second.hours.get('orders:0')!;
    expect(hour.stale).toBe(false);
    expect(hour.dirty).toBe(true);
    expect(hour.toDoc(1).facts).toBe(3);
    expect(frames.map((f) => second.merge(f, run(f), NOW))).toEqual(['duplicate', 'duplicate', 'duplicate', 'counted']);
    expect(second.hours.get('orders:0')!.toDoc(1).entries).toEqual(mergeEntries(frames.map((x) => x.entries)));
    // No stored hour at all, but a stored minute: rebuilt too.
    const third = bookFor(frames, stored);
    expect(third.hours.get('orders:0')!.toDoc(1).facts).toBe(3);
  });

  it('keeps a window dirty when it changed after the version a write captured; evicts only written, idle, ended windows', () => {
    const book = bookFor(frames);
    book.merge(frames[0]!, run(frames[0]!), NOW);
    const minute = book.minutes.get('orders:120')!;
    const captured = minute.version;
    book.merge(frames[1]!, run(frames[1]!), NOW);
    minute.written = captured;
    expect(minute.dirty).toBe(true);
    expect(book.hasDirty(0)).toBe(true);

    book.evict(NOW + 10 * 60_000, 60_000);
    expect(book.minutes.has('orders:120')).toBe(true);
    for (const w of [...book.minutes.values(), ...book.hours.values()]) w.written = w.version;
    book.evict(NOW + 10 * 60_000, 60_000);
    expect(book.minutes.size).toBe(0);
    // The hour ended at 3,600 s: long before now, so it goes too.
    expect(book.hours.size).toBe(0);
    expect(book.hasDirty(0)).toBe(false);

    const other = bookFor(frames);
    other.drop((p) => p === 0);
    expect(other.minutes.size + other.hours.size).toBe(0);
    expect(() => other.merge(frames[0]!, 'i1', NOW)).toThrow(/not loaded/);
  });
});
