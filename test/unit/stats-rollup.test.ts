import { describe, expect, it } from 'vitest';
import { LATENCY_BUCKETS, latencyBucket, percentileMs } from '../../src/agent-protocol/latency-histogram.js';
import {
  Accumulator,
  buildHourRollup,
  buildMinuteRollup,
  type FactDoc,
  mergeEntries,
  parseStep,
  resolutionForRange,
  resolutionForStep,
  type StatsEntry,
  summarize,
  windowStart,
} from '../../src/stats/rollup.js';

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

  it('a minute rollup is a function of its facts; an hour rollup of its minutes', () => {
    const f = [
      fact('i1', 1, 120, [entry({ latencies: [1, 2] })], 1),
      fact('i2', 1, 121, [entry({ latencies: [3] }), entry({ direction: 'outbound', peer: 'stock', latencies: [9] })]),
      fact('i1', 2, 179, [entry({ latencies: [4] })]),
    ];
    const m1 = buildMinuteRollup('orders', 120, f, 1);
    const m2 = buildMinuteRollup('orders', 120, [...f].reverse(), 1);
    expect(m1).toEqual(m2);
    expect(m1).toMatchObject({ _id: 'orders:120', start: 120, size: 60, hour: 0, facts: 3, instances: 2, dropped: 1 });
    expect(m1.entries.find((e) => e.direction === 'inbound')!.calls).toBe(4);

    const m3 = buildMinuteRollup('orders', 180, [fact('i1', 3, 185, [entry({ latencies: [5] })])], 1);
    const h = buildHourRollup('orders', 0, [m1, m3], 1);
    expect(h).toMatchObject({ _id: 'orders:0', size: 3_600, facts: 4, dropped: 1 });
    expect(h.entries.find((e) => e.direction === 'inbound')!.calls).toBe(5);
    expect(h.entries).toEqual(mergeEntries(f.concat(fact('i1', 3, 185, [entry({ latencies: [5] })])).map((x) => x.entries)));
  });
});
