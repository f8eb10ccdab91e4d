import { describe, expect, it } from 'vitest';
import { latencyBucket } from '../../src/agent-protocol/latency-histogram.js';
import type { StatsEntry } from '../../src/stats/rollup.js';
import { buildGraph, buildSeries, buildTop, type Window } from '../../src/stats/stats-views.js';

function e(over: Partial<StatsEntry> & { ms?: number } = {}): StatsEntry {
  const { ms = 10, ...rest } = over;
  const calls = rest.calls ?? 1;
  return {
    direction: 'inbound',
    peer: '',
    protocol: 'http',
    resource: 'GET /a',
    calls,
    successes: calls - (rest.errors ?? 0),
    errors: 0,
    limited: 0,
    broken: 0,
    degraded: 0,
    slow: 0,
    latencySumMs: ms * calls,
    latencyMaxMs: ms,
    histogram: [[latencyBucket(ms), calls]],
    ...rest,
  };
}

const w = (application: string, start: number, entries: StatsEntry[], dropped = 0): Window => ({
  application,
  start,
  entries,
  dropped,
});

describe('buildSeries', () => {
  it('buckets windows by step, fills empty buckets, filters entries', () => {
    const windows = [
      w('orders', 0, [e({ calls: 10 }), e({ direction: 'outbound', peer: 'stock', calls: 4, errors: 1 })]),
      w('orders', 30, [e({ calls: 20 })], 2),
      w('orders', 120, [e({ calls: 6, ms: 500 })]),
      w('orders', 180, [e({ calls: 100 })]), // outside [0, 180)
    ];
    const all = buildSeries(windows, { from: 0, to: 180, step: 60 });
    expect(all.map((p) => [p.t, p.calls, p.dropped])).toEqual([
      [0, 34, 2],
      [60_000, 0, 0],
      [120_000, 6, 0],
    ]);
    const out = buildSeries(windows, { from: 0, to: 180, step: 60 }, { direction: 'outbound', peer: 'stock' });
    expect(out[0]).toMatchObject({ calls: 4, errors: 1, errorRate: 0.25 });
    expect(buildSeries(windows, { from: 0, to: 180, step: 60 }, { direction: 'inbound' })[0]!.qps).toBe(0.5);
    expect(all[2]!.p99).toBe(500);
  });
});

describe('buildTop', () => {
  const windows = [
    w('orders', 0, [
      e({ resource: 'GET /a', calls: 10, ms: 5 }),
      e({ resource: 'GET /b', calls: 3, errors: 3, ms: 900 }),
      e({ direction: 'outbound', peer: 'stock', resource: 'GET /s', calls: 50 }),
      e({ direction: 'outbound', peer: 'pay', resource: 'POST /p', calls: 1, errors: 1, ms: 2_000 }),
    ]),
    w('orders', 60, [e({ resource: 'GET /a', calls: 10, ms: 5 })]),
  ];
  it('ranks resources by qps, errors or p99', () => {
    expect(buildTop(windows, { by: 'resource', metric: 'qps', limit: 2, seconds: 120 }).map((i) => i.resource)).toEqual([
      'GET /s',
      'GET /a',
    ]);
    const byErrors = buildTop(windows, { by: 'resource', metric: 'errors', limit: 1, seconds: 120 }, { direction: 'inbound' });
    expect(byErrors).toEqual([
      expect.objectContaining({ resource: 'GET /b', errors: 3, direction: 'inbound', protocol: 'http' }),
    ]);
    expect(buildTop(windows, { by: 'resource', metric: 'p99', limit: 1, seconds: 120 })[0]!.resource).toBe('POST /p');
    expect(
      buildTop(windows, { by: 'resource', metric: 'qps', limit: 5, seconds: 120 }).find((i) => i.resource === 'GET /a')!.qps,
    ).toBeCloseTo(20 / 120, 5);
  });
  it('ranks peers', () => {
    const peers = buildTop(windows, { by: 'peer', metric: 'qps', limit: 10, seconds: 120 }, { direction: 'outbound' });
    expect(peers.map((p) => [p.peer, p.calls])).toEqual([
      ['stock', 50],
      ['pay', 1],
    ]);
  });
});

describe('buildGraph', () => {
  it("prefers the caller's outbound view and uses the callee's inbound view only where the caller reports none", () => {
    const windows = [
      // web calls orders (both sides report: outbound wins, 10 not 10 + 9).
      w('web', 0, [e({ direction: 'outbound', peer: 'orders', calls: 10, errors: 2 })]),
      w('orders', 0, [
        e({ direction: 'inbound', peer: 'web', calls: 9 }),
        // batch (no agent) calls orders: only the inbound side knows.
        e({ direction: 'inbound', peer: 'batch', calls: 5, ms: 300 }),
        e({ direction: 'inbound', peer: '', calls: 7 }),
        e({ direction: 'outbound', peer: 'stock', calls: 4 }),
        e({ direction: 'outbound', peer: '', calls: 3 }),
      ]),
      w('orders', 60, [e({ direction: 'inbound', peer: 'web', calls: 1 })]),
    ];
    const { nodes, edges } = buildGraph(windows, 120);
    expect(edges.map((x) => [x.caller, x.callee, x.calls, x.source])).toEqual([
      ['batch', 'orders', 5, 'inbound'],
      ['orders', 'stock', 4, 'outbound'],
      ['web', 'orders', 10, 'outbound'],
    ]);
    expect(edges.find((x) => x.caller === 'web')).toMatchObject({ errorRate: 0.2 });
    expect(edges.find((x) => x.caller === 'web')!.qps).toBeCloseTo(10 / 120, 5);
    expect(edges.find((x) => x.caller === 'batch')!.p99).toBe(300);
    expect(nodes.map((n) => [n.application, n.reporting, n.inbound.calls, n.unknownCalleeCalls])).toEqual([
      ['batch', false, 0, 0],
      ['orders', true, 22, 3],
      ['stock', false, 0, 0],
      ['web', true, 0, 0],
    ]);
  });
});
