import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bucketLowerMs,
  bucketUpperMs,
  LATENCY_BUCKETS,
  latencyBucket,
  percentileMs,
} from '../../src/agent-protocol/latency-histogram.js';
import { StatsEntrySchema, StatsSchema } from '../../src/agent-protocol/messages.js';
import { MAX_PARKED, MAX_WAIT_SEC } from '../../agent/src/engine/call-stats.js';
import { MAX_CHAINS } from '../../agent/src/engine/chains.js';
import { isIdSegment, OTHER_RESOURCE, pathTemplate, resourceOf } from '../../agent/src/engine/resource.js';
import { MAX_KEYS_PER_SECOND } from '../../agent/src/engine/stats-entries.js';
import { DUBBO, HTTP, INBOUND, OUTBOUND, type Answer, type Call } from '../../agent/src/engine/types.js';
import { answered, breaker, concurrency, degrade, httpTarget, isCall, passed, qps, setup } from './agent-engine-support.js';

// The engine's per-second statistics: every call counted once, in the second it started, whatever
// its outcome; the stats frame entries built from them; the shared latency histogram.

type Counters = Record<string, number>;

const COUNTERS = [
  'calls',
  'successes',
  'errors',
  'limited',
  'broken',
  'degraded',
  'forced',
  'slow',
  'latencySumMs',
  'latencyMaxMs',
] as const;

/** Sums drained views by `<name>|<second>` (a second can be drained more than once: late completions). */
function byNameAndSecond(views: Record<string, unknown>[], into: Record<string, Counters> = {}): Record<string, Counters> {
  for (const view of views) {
    const id = `${String(view.name)}|${String(view.second)}`;
    const sum = (into[id] ??= Object.fromEntries(COUNTERS.map((c) => [c, 0])));
    for (const c of COUNTERS)
      sum[c] = c === 'latencyMaxMs' ? Math.max(sum[c]!, view[c] as number) : sum[c]! + (view[c] as number);
  }
  return into;
}

/** The invariants every view and entry keeps. */
function expectConsistent(v: Counters, histogram?: number[]): void {
  expect(v.calls).toBe(
    v.successes! +
      v.errors! +
      v.limited! +
      v.broken! +
      (v.forced ?? v.calls! - v.successes! - v.errors! - v.limited! - v.broken!),
  );
  if (v.forced !== undefined) expect(v.degraded! - v.forced).toBeLessThanOrEqual(v.limited! + v.broken!);
  expect(v.slow).toBeLessThanOrEqual(v.successes! + v.errors!);
  if (histogram) expect(histogram.reduce((a, b) => a + b, 0)).toBe(v.successes! + v.errors!);
}

describe('counting', () => {
  it('counts every outcome exactly once, with the invariant calls = successes + errors + limited + broken + forced', () => {
    const { clock, get, drain } = setup([
      degrade('forced', httpTarget('/forced')),
      qps('lim', { permitsPerSec: 1 }, httpTarget('/limited')),
      qps('lim-fb', { permitsPerSec: 1 }, httpTarget('/limited-fb')),
      degrade('fb1', httpTarget('/limited-fb'), false),
      breaker('brk', { strategy: 'errorCount', threshold: 1, minCalls: 1, openMs: 100 }, httpTarget('/broken')),
      breaker('brk-fb', { strategy: 'errorCount', threshold: 1, minCalls: 1 }, httpTarget('/broken-fb')),
      degrade('fb2', httpTarget('/broken-fb'), false),
      breaker('slow-50', { strategy: 'slowCallRatio', slowCallMs: 50, minCalls: 1_000 }, httpTarget('/slow')),
      breaker('slow-80', { strategy: 'slowCallRatio', slowCallMs: 80, minCalls: 1_000 }, httpTarget('/slow')),
      breaker('errors', { strategy: 'errorRatio', threshold: 1, minCalls: 1_000 }, httpTarget('/slow')),
    ]);
    for (let i = 0; i < 3; i++) answered(get('/forced'), 'degraded-forced', 'forced');

    passed(get('/limited')).exit(false);
    answered(get('/limited'), 'limited', 'lim');
    answered(get('/limited'), 'limited', 'lim');
    passed(get('/limited-fb')).exit(false);
    answered(get('/limited-fb'), 'fallback', 'fb1');
    answered(get('/limited-fb'), 'fallback', 'fb1');

    passed(get('/broken')).exit(true);
    answered(get('/broken'), 'breaker-open', 'brk');
    answered(get('/broken'), 'breaker-open', 'brk');
    clock.now = 100;
    const probe = passed(get('/broken'));
    answered(get('/broken'), 'breaker-half-open', 'brk');
    probe.exit(false);
    passed(get('/broken-fb')).exit(true);
    answered(get('/broken-fb'), 'fallback', 'fb2');
    answered(get('/broken-fb'), 'fallback', 'fb2');

    // Slow above the largest slowCallMs of the slow-call breakers matching (80), else above 1,000 ms.
    const slow = [50, 80, 81, 200].map(() => passed(get('/slow')));
    const plain = [1_000, 1_001].map(() => passed(get('/plain')));
    slow.forEach((call, i) => {
      clock.now = 100 + [50, 80, 81, 200][i]!;
      call.exit(i === 3);
    });
    plain.forEach((call, i) => {
      clock.now = 100 + [1_000, 1_001][i]!;
      call.exit(false);
    });

    const views = drain();
    const got = byNameAndSecond(views);
    const zero = Object.fromEntries(COUNTERS.map((c) => [c, 0]));
    expect(got).toEqual({
      '/forced|0': { ...zero, calls: 3, degraded: 3, forced: 3 },
      '/limited|0': { ...zero, calls: 3, successes: 1, limited: 2 },
      '/limited-fb|0': { ...zero, calls: 3, successes: 1, limited: 2, degraded: 2 },
      '/broken|0': { ...zero, calls: 5, successes: 1, errors: 1, broken: 3 },
      '/broken-fb|0': { ...zero, calls: 3, errors: 1, broken: 2, degraded: 2 },
      '/slow|0': { ...zero, calls: 4, successes: 3, errors: 1, slow: 2, latencySumMs: 411, latencyMaxMs: 200 },
      '/plain|0': { ...zero, calls: 2, successes: 2, slow: 1, latencySumMs: 2_001, latencyMaxMs: 1_001 },
    });
    for (const view of views) expectConsistent(view as Counters, view.latencyHistogram as number[]);
  });

  it('counts queued calls in the second they arrived: admitted, rejected after the wait, or given up while waiting', () => {
    const { clock, get, drain } = setup([
      qps('queue', { permitsPerSec: 2, queue: { maxWaitMs: 2_000 } }, httpTarget('/q')),
      breaker('brk', { strategy: 'errorCount', threshold: 1, minCalls: 1 }, httpTarget('/q')),
    ]);
    clock.now = 900;
    const first = passed(get('/q'));
    const [second, third, fourth] = [get('/q'), get('/q'), get('/q')] as Call[];
    expect([second!.waitMs, third!.waitMs, fourth!.waitMs]).toEqual([500, 1_000, 1_500]);
    clock.now = 1_400;
    expect(second!.resume()).toBeNull();
    clock.now = 1_500;
    second!.exit(false); // latency from arrival: 600 ms
    first.exit(true); // opens the breaker
    clock.now = 1_900;
    expect(third!.resume()).toMatchObject({ reason: 'breaker-open' });
    clock.now = 2_000;
    fourth!.exit(true); // the caller went away while waiting: 1,100 ms, an error
    expect(fourth!.exit(true)).toBe(-1);
    expect(byNameAndSecond(drain())).toEqual({
      '/q|0': {
        calls: 4,
        successes: 1,
        errors: 2,
        limited: 0,
        broken: 1,
        degraded: 0,
        forced: 0,
        slow: 1,
        latencySumMs: 600 + 600 + 1_100,
        latencyMaxMs: 1_100,
      },
    });
  });

  it('exit returns the latency from arrival once, then -1; a call answered by resume() is not exited', () => {
    const { clock, get } = setup([]);
    const call = passed(get());
    clock.now = 42;
    expect(call.exit(false)).toBe(42);
    expect(call.exit(false)).toBe(-1);
  });

  it('keeps calls from any mix of rules, times and drains exact, in the second they started (property)', () => {
    type Op =
      | { op: 'enter'; path: number }
      | { op: 'advance'; ms: number }
      | { op: 'exit'; index: number; error: boolean }
      | { op: 'resume'; index: number }
      | { op: 'drain' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ op: fc.constant('enter' as const), path: fc.integer({ min: 0, max: 4 }) }) },
      { weight: 3, arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 700 }) }) },
      {
        weight: 4,
        arbitrary: fc.record({ op: fc.constant('exit' as const), index: fc.nat(), error: fc.boolean() }),
      },
      { weight: 2, arbitrary: fc.record({ op: fc.constant('resume' as const), index: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('drain' as const) }) },
    );
    const rules = [
      qps('p0-queue', { permitsPerSec: 5, queue: { maxWaitMs: 300 } }, httpTarget('/p0')),
      concurrency('p1-slots', 2, httpTarget('/p1')),
      degrade('p1-fb', httpTarget('/p1'), false),
      breaker('p2-errors', { strategy: 'errorRatio', threshold: 0.5, minCalls: 2, openMs: 200 }, httpTarget('/p2')),
      degrade('p3-off', httpTarget('/p3')),
      breaker('p4-slow', { strategy: 'slowCallRatio', slowCallMs: 100, minCalls: 2, openMs: 300 }, httpTarget('/p4')),
      breaker('p4-count', { strategy: 'errorCount', threshold: 2, minCalls: 2, openMs: 300 }, httpTarget('/p4')),
      degrade('p4-fb', httpTarget('/p4'), false),
    ];
    const slowMs = [1_000, 1_000, 1_000, 1_000, 100];
    fc.assert(
      fc.property(fc.array(op, { minLength: 20, maxLength: 300, size: 'max' }), (ops) => {
        const { clock, engine, get, drain } = setup(rules);
        const expected: Record<string, Counters> = {};
        const observed: Record<string, Counters> = {};
        const count = (path: number, second: number, add: Counters) => {
          const sum = (expected[`/p${path}|${second}`] ??= Object.fromEntries(COUNTERS.map((c) => [c, 0])));
          for (const [c, n] of Object.entries(add)) sum[c] = c === 'latencyMaxMs' ? Math.max(sum[c]!, n) : sum[c]! + n;
        };
        const answer = (path: number, second: number, a: Answer) => {
          const rejectedBy = path === 1 ? 'limited' : 'broken'; // the only rules a fallback can replace
          if (a.reason === 'degraded-forced') count(path, second, { calls: 1, degraded: 1, forced: 1 });
          else if (a.reason === 'fallback') count(path, second, { calls: 1, degraded: 1, [rejectedBy]: 1 });
          else count(path, second, { calls: 1, [a.reason === 'limited' ? 'limited' : 'broken']: 1 });
        };
        let running: { call: Call; path: number; second: number; at: number }[] = [];
        let waiting: typeof running = [];
        const complete = (c: (typeof running)[number], error: boolean) => {
          const latency = clock.now - c.at;
          expect(c.call.exit(error)).toBe(latency);
          count(c.path, c.second, {
            calls: 1,
            [error ? 'errors' : 'successes']: 1,
            slow: latency > slowMs[c.path]! ? 1 : 0,
            latencySumMs: latency,
            latencyMaxMs: latency,
          });
        };
        for (const o of ops) {
          if (o.op === 'enter') {
            const second = Math.floor(clock.now / 1_000);
            const result = get(`/p${o.path}`);
            if (!isCall(result)) answer(o.path, second, result);
            else (result.waitMs > 0 ? waiting : running).push({ call: result, path: o.path, second, at: clock.now });
          } else if (o.op === 'advance') {
            clock.advance(o.ms);
          } else if (o.op === 'exit' && running.length + waiting.length > 0) {
            const all = [...running, ...waiting];
            const c = all[o.index % all.length]!;
            running = running.filter((r) => r !== c);
            waiting = waiting.filter((r) => r !== c);
            complete(c, o.error);
          } else if (o.op === 'resume' && waiting.length > 0) {
            const c = waiting[o.index % waiting.length]!;
            waiting = waiting.filter((r) => r !== c);
            const next = c.call.resume();
            if (next === null) running.push(c);
            else answer(c.path, c.second, next);
          } else if (o.op === 'drain') {
            byNameAndSecond(drain(engine.secondAt(clock.now)), observed);
          }
        }
        for (const c of [...running, ...waiting]) complete(c, false);
        byNameAndSecond(drain(), observed);
        expect(observed).toEqual(expected);
        for (const v of Object.values(observed)) expectConsistent(v);
        expect(engine.cacheSizes().parkedStats).toBe(0);
      }),
      { numRuns: 200 },
    );
  });
});

describe('the second a call is counted in', () => {
  it('is the second it started in, also when it completes after that second was drained', () => {
    const { clock, engine, get, drain } = setup([]);
    clock.now = 900;
    const long = passed(get('/a'));
    passed(get('/a')).exit(false);
    clock.now = 1_100;
    const next = passed(get('/a')); // second 1: the slot of second 0 is parked, its long call in flight
    expect(drain(1)).toMatchObject([{ name: '/a', second: 0, calls: 1 }]);
    expect(engine.cacheSizes().parkedStats).toBe(1);
    clock.now = 2_500;
    long.exit(false);
    next.exit(true);
    expect(drain(2)).toEqual([
      expect.objectContaining({ second: 1, calls: 1, errors: 1, latencySumMs: 1_400 }),
      expect.objectContaining({ second: 0, calls: 1, successes: 1, latencySumMs: 1_600, slow: 1 }),
    ]);
    expect(engine.cacheSizes().parkedStats).toBe(0);
    expect(drain()).toEqual([]);
  });

  it(`stops waiting for a second after ${MAX_WAIT_SEC} s: its calls still running count when they complete`, () => {
    const { clock, engine, get, drain } = setup([]);
    const stuck = passed(get('/a'));
    let calls = 0;
    for (let s = 1; s <= MAX_WAIT_SEC + 2; s++) {
      clock.now = s * 1_000;
      passed(get('/a')).exit(false);
      for (const view of drain(s)) calls += view.calls as number;
    }
    expect(engine.cacheSizes().parkedStats).toBe(0);
    clock.now = 400_000;
    stuck.exit(false);
    // Second 302's call was not drained yet; the stuck call counts in second 400, where it completed.
    const late = byNameAndSecond(drain());
    expect(late).toEqual({
      '/a|302': expect.objectContaining({ calls: 1, latencyMaxMs: 0 }) as Counters,
      '/a|400': expect.objectContaining({ calls: 1, latencyMaxMs: 400_000 }) as Counters,
    });
    expect(calls + 2).toBe(MAX_WAIT_SEC + 3);
  });

  it(`waits for at most ${MAX_PARKED} seconds of keys at once; the oldest over that count where they complete`, () => {
    const { clock, engine, get, drain } = setup([]);
    const keys = MAX_PARKED + 100;
    const first = Array.from({ length: keys }, (_, i) => passed(get(`/k${i}`)));
    clock.now = 1_000;
    for (let i = 0; i < keys; i++) passed(get(`/k${i}`)).exit(false);
    expect(engine.cacheSizes().parkedStats).toBe(keys);
    expect(drain(1)).toEqual([]);
    expect(engine.cacheSizes().parkedStats).toBe(MAX_PARKED);
    clock.now = 1_500;
    for (const call of first) call.exit(false);
    const views = drain();
    const seconds = byNameAndSecond(views);
    expect(Object.values(seconds).reduce((n, v) => n + v.calls!, 0)).toBe(2 * keys);
    expect(seconds['/k0|1']).toMatchObject({ calls: 2 });
    expect(seconds['/k0|0']).toBeUndefined();
    expect(seconds[`/k${keys - 1}|0`]).toMatchObject({ calls: 1, latencySumMs: 1_500 });
    expect(engine.cacheSizes().parkedStats).toBe(0);
  });

  it('follows the epoch offset, and never goes back when it moves backwards', () => {
    const { clock, engine } = setup([]);
    engine.setEpochOffset(1_700_000_000_500);
    expect(engine.secondAt(clock.now)).toBe(1_700_000_000);
    clock.now = 600;
    expect(engine.secondAt(clock.now)).toBe(1_700_000_001);
    engine.setEpochOffset(1_700_000_000_000);
    expect(engine.secondAt(clock.now)).toBe(1_700_000_001);
    clock.now = 2_000;
    expect(engine.secondAt(clock.now)).toBe(1_700_000_002);
    expect(engine.epochOffsetMs).toBe(1_700_000_000_000);
  });
});

describe('stats frame entries', () => {
  it('merge keys by route template, name Dubbo methods, blank invalid peers, and validate', () => {
    const { clock, engine, get, dubbo, outbound } = setup([]);
    clock.now = 250;
    for (const path of ['/api/orders/1', '/api/orders/2?x=1', '/api//orders/3/']) {
      clock.now += 5;
      const call = passed(get(path));
      clock.now += 10;
      call.exit(false);
    }
    passed(get('/api/orders/4', 'Not A Caller')).exit(true);
    passed(dubbo('com.example.StockService', 'reserve', 'web')).exit(false);
    passed(outbound('stock', '/api/stock/0b0e7e2a-64f4-4a9e-9f0d-7a2f1b3c4d5e', 'POST')).exit(false);
    clock.now = 1_000;
    passed(get('/api/orders/9')).exit(false); // the current second: not drained yet
    const [only, ...rest] = engine.drainSeconds();
    expect(rest).toEqual([]);
    expect(only!.second).toBe(0);
    const entries = only!.entries;
    const zero = { errors: 0, limited: 0, broken: 0, degraded: 0, slow: 0 };
    expect(entries).toEqual([
      {
        ...zero,
        direction: 'inbound',
        peer: 'web',
        protocol: 'http',
        resource: 'GET /api/orders/{id}',
        calls: 3,
        successes: 3,
        latencySumMs: 30,
        latencyMaxMs: 10,
        histogram: [[10, 3]],
      },
      {
        ...zero,
        direction: 'inbound',
        peer: '',
        protocol: 'http',
        resource: 'GET /api/orders/{id}',
        calls: 1,
        successes: 0,
        errors: 1,
        latencySumMs: 0,
        latencyMaxMs: 0,
        histogram: [[0, 1]],
      },
      expect.objectContaining({ protocol: 'dubbo', resource: 'com.example.StockService#reserve', peer: 'web', calls: 1 }),
      expect.objectContaining({ direction: 'outbound', peer: 'stock', resource: 'POST /api/stock/{id}', calls: 1 }),
    ]);
    for (const entry of entries) expect(StatsEntrySchema.safeParse(entry).success).toBe(true);
    expect(StatsSchema.safeParse({ type: 'stats', seq: 1, second: only!.second, dropped: 0, entries }).success).toBe(true);
    clock.now = 2_000;
    expect(engine.drainSeconds()).toEqual([
      { second: 1, entries: [expect.objectContaining({ resource: 'GET /api/orders/{id}', calls: 1 })] },
    ]);
    expect(engine.drainSeconds()).toEqual([]);
  });

  it("name an outbound call's callee by application when resolved, else by its host:port address", () => {
    const { clock, engine, outbound } = setup([]);
    passed(outbound('stock', '/api/stock/1')).exit(false);
    passed(outbound('10.0.0.9:8080', '/api/stock/2')).exit(false);
    passed(outbound('10.0.0.9:8080', '/api/stock/3')).exit(true);
    passed(outbound('[fe80::1]:443', '/api/stock/4')).exit(false);
    passed(outbound('Not An Address:1', '/api/stock/5')).exit(false);
    clock.now = 1_000;
    const entries = engine.drainSeconds()[0]!.entries;
    expect(entries.map((e) => [e.peer, e.resource, e.calls, e.errors])).toEqual([
      ['stock', 'GET /api/stock/{id}', 1, 0],
      ['10.0.0.9:8080', 'GET /api/stock/{id}', 2, 1],
      ['[fe80::1]:443', 'GET /api/stock/{id}', 1, 0],
      ['', 'GET /api/stock/{id}', 1, 0],
    ]);
    for (const entry of entries) expect(StatsEntrySchema.safeParse(entry).success).toBe(true);
  });

  it('merges histograms bucket by bucket and keeps the largest latency', () => {
    const { clock, engine, get } = setup([]);
    const latencies = [3, 3, 17, 250, 4_000, 17];
    latencies.forEach((ms, i) => {
      clock.now = 0;
      const call = passed(get(`/items/${i}`));
      clock.now = ms;
      call.exit(ms > 1_000);
    });
    clock.now = 5_000;
    const entry = engine.drainSeconds()[0]!.entries[0]!;
    const expected = new Map<number, number>();
    for (const ms of latencies) expected.set(latencyBucket(ms), (expected.get(latencyBucket(ms)) ?? 0) + 1);
    expect(entry.histogram).toEqual([...expected].sort((a, b) => a[0] - b[0]));
    expect(entry).toMatchObject({ calls: 6, successes: 5, errors: 1, slow: 1, latencyMaxMs: 4_000, latencySumMs: 4_290 });
  });

  it(`keeps at most ${MAX_KEYS_PER_SECOND} keys a second; further calls count under (other)`, () => {
    const { clock, engine, get } = setup([]);
    for (let i = 0; i < MAX_KEYS_PER_SECOND + 100; i++) passed(get(`/route-${i}/items`)).exit(false);
    passed(get('/route-7/items')).exit(false);
    clock.now = 1_000;
    const entries = engine.drainSeconds()[0]!.entries;
    expect(entries).toHaveLength(MAX_KEYS_PER_SECOND + 1);
    expect(entries.reduce((n, e) => n + e.calls, 0)).toBe(MAX_KEYS_PER_SECOND + 101);
    expect(entries.find((e) => e.resource === 'GET /route-7/items')).toMatchObject({ calls: 2 });
    expect(entries.at(-1)).toMatchObject({
      direction: 'inbound',
      peer: '',
      protocol: 'http',
      resource: OTHER_RESOURCE,
      calls: 100,
    });
  });

  it('counts the keys beyond the engine cache under (other) too', () => {
    const { clock, engine, get } = setup([]);
    for (let i = 0; i < MAX_CHAINS + 10; i++) passed(get(`/x/${i}`)).exit(false);
    clock.now = 1_000;
    const entries = engine.drainSeconds()[0]!.entries;
    expect(entries).toEqual([
      expect.objectContaining({ resource: 'GET /x/{id}', peer: 'web', calls: MAX_CHAINS }),
      expect.objectContaining({ resource: OTHER_RESOURCE, peer: '', calls: 10 }),
    ]);
  });
});

describe('resource templates', () => {
  it.each([
    ['/', '/'],
    ['/api/orders', '/api/orders'],
    ['/api/orders/123', '/api/orders/{id}'],
    ['/api/orders/123/items/0', '/api/orders/{id}/items/{id}'],
    ['/api/v1/users', '/api/v1/users'],
    ['/u/123e4567-e89b-12d3-a456-426614174000/x', '/u/{id}/x'],
    ['/u/123E4567-E89B-12D3-A456-426614174000', '/u/{id}'],
    ['/h/deadbeefdeadbeef', '/h/{id}'],
    ['/h/DEADBEEFDEADBEEF01', '/h/{id}'],
    ['/h/deadbeefdeadbee', '/h/deadbeefdeadbee'],
    ['/h/abc123', '/h/abc123'],
    [`/t/${'a'.repeat(65)}`, '/t/{id}'],
    [`/t/${'x'.repeat(64)}`, `/t/${'x'.repeat(64)}`],
  ])('%s → %s', (path, template) => {
    expect(pathTemplate(path)).toBe(template);
  });

  it('is <METHOD> <template> for HTTP, <interface>#<method> for Dubbo, (other) when too long', () => {
    expect(resourceOf(HTTP, 'DELETE', '/carts/42')).toBe('DELETE /carts/{id}');
    expect(resourceOf(DUBBO, 'com.example.StockService', 'reserve')).toBe('com.example.StockService#reserve');
    expect(resourceOf(HTTP, 'GET', `/${Array.from({ length: 12 }, (_, i) => `segment-${i}-${'x'.repeat(50)}`).join('/')}`)).toBe(
      OTHER_RESOURCE,
    );
    expect(isIdSegment('42')).toBe(true);
    expect(isIdSegment('v42')).toBe(false);
    expect(INBOUND === 0 && OUTBOUND === 1).toBe(true);
  });
});

describe('the shared latency histogram', () => {
  it('round-trips every bucket through its bounds; buckets are contiguous and within 12.5 %', () => {
    for (let i = 0; i < LATENCY_BUCKETS; i++) {
      expect(latencyBucket(bucketLowerMs(i))).toBe(i);
      if (i === LATENCY_BUCKETS - 1) {
        expect(bucketUpperMs(i)).toBe(Infinity);
        continue;
      }
      expect(latencyBucket(bucketUpperMs(i))).toBe(i);
      expect(bucketUpperMs(i) + 1).toBe(bucketLowerMs(i + 1));
      if (i >= 16) expect((bucketUpperMs(i) - bucketLowerMs(i) + 1) / bucketLowerMs(i)).toBeLessThanOrEqual(1 / 8);
    }
  });

  it('is exact below 16 ms, truncates fractions, and puts 2^31 ms and beyond in the last bucket', () => {
    expect([0, 1, 15, 15.9, 16, 17, 18, 31, 32, 1_000].map(latencyBucket)).toEqual([0, 1, 15, 15, 16, 16, 17, 23, 24, 63]);
    expect([-5, Number.NaN].map(latencyBucket)).toEqual([0, 0]);
    for (const ms of [2 ** 31, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER, Infinity])
      expect(latencyBucket(ms)).toBe(LATENCY_BUCKETS - 1);
    expect(latencyBucket(2 ** 31 - 1)).toBe(LATENCY_BUCKETS - 2);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        expect(latencyBucket(lo)).toBeLessThanOrEqual(latencyBucket(hi));
        expect(bucketLowerMs(latencyBucket(lo))).toBeLessThanOrEqual(lo);
        expect(bucketUpperMs(latencyBucket(lo))).toBeGreaterThanOrEqual(lo);
      }),
    );
  });

  it('reads percentiles as the upper bound of the bucket holding them, capped by the maximum', () => {
    const counts = new Array<number>(LATENCY_BUCKETS).fill(0);
    expect(percentileMs(counts, 50)).toBe(0);
    counts[latencyBucket(10)] = 99;
    counts[latencyBucket(1_000)] = 1;
    expect(percentileMs(counts, 0)).toBe(10);
    expect(percentileMs(counts, 50)).toBe(10);
    expect(percentileMs(counts, 99)).toBe(10);
    expect(percentileMs(counts, 99.5)).toBe(bucketUpperMs(latencyBucket(1_000)));
    expect(percentileMs(counts, 100, 1_000)).toBe(1_000);
    counts[latencyBucket(300)] = 100;
    expect(percentileMs(counts, 49)).toBe(10);
    expect(percentileMs(counts, 50)).toBe(bucketUpperMs(latencyBucket(300)));
    expect(bucketUpperMs(latencyBucket(300))).toBeLessThan(300 * 1.125);
  });
});
