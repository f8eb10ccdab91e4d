import { describe, expect, it } from 'vitest';
import { type Rule } from '../../src/agent-protocol/rules.js';
import { LATENCY_BUCKETS, latencyBucket } from '../../src/agent-protocol/latency-histogram.js';
import { ManualClock, TickerClock } from '../../agent/src/engine/clock.js';
import { MAX_CHAINS } from '../../agent/src/engine/chains.js';
import { DUBBO, HTTP, INBOUND, type Call } from '../../agent/src/engine/types.js';
import {
  answered,
  breaker,
  concurrency,
  degrade,
  httpTarget,
  outcome,
  passed,
  qps,
  rule,
  setup,
} from './agent-engine-support.js';

const app = (extra: Record<string, unknown> = {}) => ({ direction: 'inbound', ...extra, resource: { type: 'application' } });
const dubboTarget = (method?: string, extra: Record<string, unknown> = {}) => ({
  direction: 'inbound',
  ...extra,
  resource: { type: 'dubbo', interface: 'com.example.StockService', ...(method ? { method } : {}) },
});

describe('which rules match a call', () => {
  it('only enabled rules of the agent’s own application', () => {
    const other = rule({ id: 'other', kind: 'degrade', application: 'billing', force: true, target: app() });
    const disabled = rule({ id: 'off', kind: 'degrade', enabled: false, force: true, target: app() });
    const { get } = setup([other, disabled]);
    passed(get());
  });

  it('inbound: a rule with caller matches that caller only; without, every caller and the unknown one', () => {
    const { get } = setup([degrade('web-only', app({ caller: 'web' }))]);
    expect(['web', 'mobile', ''].map((caller) => outcome(get('/x', caller)))).toEqual([
      'degraded-forced:web-only',
      'pass',
      'pass',
    ]);
    const all = setup([degrade('all', app())]);
    expect(['web', ''].map((caller) => outcome(all.get('/x', caller)))).toEqual(['degraded-forced:all', 'degraded-forced:all']);
  });

  it('outbound: the callee must be equal; an unknown callee matches nothing; directions never mix', () => {
    const { get, outbound } = setup([
      degrade('stock', { direction: 'outbound', callee: 'stock', resource: { type: 'application' } }),
    ]);
    expect([outbound('stock', '/x'), outbound('pricing', '/x'), outbound('', '/x'), get('/x', 'stock')].map(outcome)).toEqual([
      'degraded-forced:stock',
      'pass',
      'pass',
      'pass',
    ]);
  });

  it('HTTP: method (GET is not HEAD) and the normalised request path', () => {
    const { get } = setup([degrade('d', httpTarget('/api/orders/{id}', 'GET'))]);
    const matching = [
      '/api/orders/7',
      '/api/orders/7?x=1',
      '/api//orders/7/',
      '/api/x/../orders/7',
      '/api/./orders/7#f',
      '/api/orders/a%2Fb',
    ];
    for (const path of matching) expect(outcome(get(path)), path).toBe('degraded-forced:d');
    for (const path of ['/api/orders/7/items', '/api/orders', '/api/orders/7/..', '/api/Orders/7', '/api/orders/7/./x'])
      expect(outcome(get(path)), path).toBe('pass');
    expect(outcome(get('/api/orders/7', 'web', 'HEAD'))).toBe('pass');
  });

  it('HTTP: no method matches every method; ** matches zero or more segments; / is the root', () => {
    const { get } = setup([degrade('tail', httpTarget('/api/**')), degrade('root', httpTarget('/'))]);
    expect(
      ['/api', '/api/a/b/c?q', '/apix', '/', '', '/?q=1', '/./', '/a/..'].map((p) => outcome(get(p, 'web', 'POST'))),
    ).toEqual([
      'degraded-forced:tail',
      'degraded-forced:tail',
      'pass',
      'degraded-forced:root',
      'degraded-forced:root',
      'degraded-forced:root',
      'degraded-forced:root',
      'degraded-forced:root',
    ]);
  });

  it('Dubbo: interface, and method when the rule names one; HTTP rules never match Dubbo calls', () => {
    const { dubbo, get } = setup([degrade('reserve', dubboTarget('reserve')), degrade('http', httpTarget('/**'))]);
    expect(
      [
        dubbo('com.example.StockService', 'reserve'),
        dubbo('com.example.StockService', 'release'),
        dubbo('com.example.PriceService', 'reserve'),
        get('/com.example.StockService/reserve'),
      ].map(outcome),
    ).toEqual(['degraded-forced:reserve', 'pass', 'pass', 'degraded-forced:http']);
    const every = setup([degrade('iface', dubboTarget())]);
    expect(outcome(every.dubbo('com.example.StockService', 'release'))).toBe('degraded-forced:iface');
  });

  it('an application resource matches HTTP and Dubbo calls', () => {
    const { dubbo, get } = setup([degrade('all', app())]);
    expect([get('/x'), dubbo('com.example.StockService', 'reserve')].map(outcome)).toEqual([
      'degraded-forced:all',
      'degraded-forced:all',
    ]);
  });
});

describe('the most specific rule', () => {
  const winner = (rules: Rule[], path = '/api/orders/7', caller = 'web') => answered(setup(rules).get(path, caller)).ruleId;

  it('1. a rule with caller beats one without', () => {
    const rules = [degrade('z-caller', app({ caller: 'web' })), degrade('a-path', httpTarget('/api/orders/7', 'GET'))];
    expect(winner(rules)).toBe('z-caller');
    expect(winner(rules, '/api/orders/7', 'mobile')).toBe('a-path');
  });

  it('2. Dubbo with method, then Dubbo interface or HTTP, then application', () => {
    const rules = [degrade('a-app', app()), degrade('b-iface', dubboTarget()), degrade('c-method', dubboTarget('reserve'))];
    const dubboWinner = (rs: Rule[]) => answered(setup(rs).dubbo('com.example.StockService', 'reserve')).ruleId;
    expect(dubboWinner(rules)).toBe('c-method');
    expect(dubboWinner(rules.slice(0, 2))).toBe('b-iface');
    expect(winner([degrade('a-app', app()), degrade('b-http', httpTarget('/api/**'))])).toBe('b-http');
  });

  it('3. HTTP patterns left to right: literal > wildcard > end > **; then method', () => {
    const rules = [
      degrade('a', httpTarget('/api/**')),
      degrade('b', httpTarget('/api/orders/**')),
      degrade('c', httpTarget('/api/orders/{id}')),
      degrade('d', httpTarget('/api/orders/7')),
    ];
    expect(winner(rules)).toBe('d');
    expect(winner(rules.slice(0, 3))).toBe('c');
    expect(winner(rules.slice(0, 2))).toBe('b');
    expect(winner([degrade('e', httpTarget('/api/*/7')), degrade('f', httpTarget('/api/orders/*'))])).toBe('f');
    expect(winner([degrade('g', httpTarget('/api/orders/**')), degrade('h', httpTarget('/api/orders'))], '/api/orders')).toBe(
      'h',
    );
    expect(winner([degrade('i', httpTarget('/api/orders/{id}')), degrade('j', httpTarget('/api/orders/*', 'GET'))])).toBe('j');
  });

  it('4. the lower id (code-unit order)', () => {
    expect(winner([degrade('b', httpTarget()), degrade('a', httpTarget()), degrade('C', httpTarget())])).toBe('C');
  });

  it('picks the fallback of a rejected call by the same order', () => {
    const { get } = setup([
      qps('lim', { permitsPerSec: 1 }),
      degrade('wide', httpTarget('/api/**'), false),
      degrade('narrow', httpTarget('/api/orders/{id}'), false),
    ]);
    passed(get());
    answered(get(), 'fallback', 'narrow');
  });
});

describe('degrade', () => {
  it('forced: every call gets the fallback; no limit takes a token, no breaker counts', () => {
    const limit = qps('lim', { permitsPerSec: 1 });
    const brk = breaker('brk', { strategy: 'errorCount', threshold: 1, minCalls: 1 });
    const { engine, get, events, drain } = setup([limit, brk, degrade('off', httpTarget())]);
    for (let i = 0; i < 5; i++) answered(get(), 'degraded-forced', 'off');
    expect(drain()).toMatchObject([{ calls: 5, degraded: 5, forced: 5, successes: 0, limited: 0 }]);
    engine.apply([limit, brk]);
    passed(get()).exit(true); // the bucket is still full
    expect(events).toEqual([['brk', 'OPEN', 0]]);
  });

  it('not forced: replaces the rejection of a limit or a breaker, counted under both reasons', () => {
    const fallback = {
      http: { status: 200, headers: { 'content-type': 'application/json' }, body: '{"degraded":true}' },
      rpc: { value: { items: [] } },
    };
    const rules = [
      qps('lim', { permitsPerSec: 1 }, app()),
      breaker('brk', { strategy: 'errorCount', threshold: 1, minCalls: 1 }, app()),
      degrade('fb', app(), false, fallback),
    ];
    const { clock, get, drain } = setup(rules);
    passed(get()).exit(true);
    const answer = answered(get(), 'fallback', 'fb');
    expect(answer.status).toBe(200);
    expect(answer.headers).toEqual([
      ['content-type', 'application/json'],
      ['x-steward-reason', 'fallback'],
      ['x-steward-rule', 'fb'],
    ]);
    expect(new TextDecoder().decode(answer.body)).toBe('{"degraded":true}');
    expect(answer.rpcValue).toEqual({ items: [] });
    expect(answer.rpcMessage).toBeUndefined();
    clock.now = 1_000;
    expect(get()).toBe(answer); // the breaker is open now
    expect(drain().sort((a, b) => Number(a.second) - Number(b.second))).toMatchObject([
      { second: 0, calls: 2, limited: 1, broken: 0, degraded: 1, successes: 0, errors: 1 },
      { second: 1, calls: 1, limited: 0, broken: 1, degraded: 1 },
    ]);
  });
});

describe('answers', () => {
  it('a limit’s default rejection: 429, the reason and rule headers, no body, the RPC message', () => {
    const { get } = setup([qps('lim', { permitsPerSec: 1 })]);
    passed(get());
    const answer = answered(get(), 'limited', 'lim');
    expect(answer).toMatchObject({ kind: 'answer', status: 429, rpcMessage: 'steward: rate limited', rpcValue: undefined });
    expect(answer.headers).toEqual([
      ['x-steward-reason', 'limited'],
      ['x-steward-rule', 'lim'],
    ]);
    expect(answer.body).toEqual(new Uint8Array());
    expect(Object.isFrozen(answer) && Object.isFrozen(answer.headers) && Object.isFrozen(answer.headers[0])).toBe(true);
    expect(get()).toBe(answer); // built once, when the rules were applied
  });

  it('the rule’s headers first and kept; content-type added for a body; the body as UTF-8', () => {
    const limited = rule({
      id: 'lim',
      kind: 'limit',
      target: httpTarget(),
      limit: { mode: 'qps', permitsPerSec: 1 },
      rejection: {
        http: { status: 503, headers: { 'retry-after': '1', 'x-steward-rule': 'custom' }, body: 'trop de requêtes' },
        rpc: { message: 'busy' },
      },
    });
    const { get } = setup([limited]);
    passed(get());
    const answer = answered(get(), 'limited', 'lim');
    expect(answer.status).toBe(503);
    expect(answer.rpcMessage).toBe('busy');
    expect(answer.headers).toEqual([
      ['retry-after', '1'],
      ['x-steward-rule', 'custom'],
      ['x-steward-reason', 'limited'],
      ['content-type', 'text/plain; charset=utf-8'],
    ]);
    expect(Array.from(answer.body)).toEqual(Array.from(new TextEncoder().encode('trop de requêtes')));
    expect(answer.body).toHaveLength(17); // ê is two bytes
  });

  it('a breaker’s default rejections: 503 and its RPC message, one answer per reason', () => {
    const { clock, get } = setup([breaker('brk', { strategy: 'errorCount', threshold: 1, minCalls: 1, openMs: 100, probes: 1 })]);
    passed(get()).exit(true);
    const open = answered(get(), 'breaker-open', 'brk');
    clock.now = 100;
    passed(get());
    const halfOpen = answered(get(), 'breaker-half-open', 'brk');
    for (const [answer, reason] of [
      [open, 'breaker-open'],
      [halfOpen, 'breaker-half-open'],
    ] as const) {
      expect(answer).toMatchObject({ status: 503, rpcMessage: 'steward: circuit breaker open' });
      expect(answer.headers).toEqual([
        ['x-steward-reason', reason],
        ['x-steward-rule', 'brk'],
      ]);
    }
  });

  it('a degrade’s fallback: 200, no body and no content-type by default; the RPC value frozen', () => {
    const { dubbo, get } = setup([degrade('d', app(), true, { rpc: { value: { items: [1, { a: 'b' }] } } })]);
    const answer = answered(get(), 'degraded-forced', 'd');
    expect(answer.status).toBe(200);
    expect(answer.headers).toEqual([
      ['x-steward-reason', 'degraded-forced'],
      ['x-steward-rule', 'd'],
    ]);
    expect(answer.body).toHaveLength(0);
    const value = answered(dubbo('com.example.StockService', 'reserve')).rpcValue as { items: [number, { a: string }] };
    expect(value).toEqual({ items: [1, { a: 'b' }] });
    expect(Object.isFrozen(value) && Object.isFrozen(value.items) && Object.isFrozen(value.items[1])).toBe(true);
  });
});

describe('apply', () => {
  it('keeps the state of unchanged rules, starts changed and new ones afresh, and re-resolves cached keys', () => {
    const a = qps('a', { permitsPerSec: 1 });
    const b = qps('b', { permitsPerSec: 1 });
    const { engine, get } = setup([a]);
    passed(get());
    answered(get(), 'limited', 'a');
    engine.apply([a, b]);
    answered(get(), 'limited', 'a'); // a kept its empty bucket
    engine.apply([qps('a', { permitsPerSec: 1, burst: 2 }), b]);
    passed(get()); // a changed: full again (2); b unchanged, never reached so far (1)
    answered(get(), 'limited', 'b');
    answered(get(), 'limited', 'a'); // a's token taken by the call b rejected is not returned
    engine.apply([]);
    for (let i = 0; i < 10; i++) passed(get()).exit(false);
  });

  it('lets calls in flight finish against the state they started with', () => {
    const { engine, get } = setup([concurrency('c', 1)]);
    const first = passed(get());
    engine.apply([concurrency('c', 1)]);
    answered(get(), 'limited', 'c'); // unchanged: still one in flight
    engine.apply([concurrency('c', 2)]);
    passed(get());
    passed(get());
    answered(get(), 'limited', 'c');
    first.exit(false); // releases the old counter, not the new one
    answered(get(), 'limited', 'c');
  });
});

describe('calls', () => {
  it('exit twice is a no-op the second time', () => {
    const { get, drain } = setup([concurrency('c', 1)]);
    const call = passed(get());
    call.exit(false);
    call.exit(true);
    const second = passed(get());
    answered(get(), 'limited', 'c'); // the counter did not go below zero
    second.exit(false);
    expect(drain()).toMatchObject([{ calls: 3, successes: 2, errors: 0, limited: 1 }]);
  });

  it('resume() of a call that did not wait proceeds and changes nothing', () => {
    const { get, drain } = setup([]);
    const call = passed(get());
    expect(call.resume()).toBeNull();
    call.exit(false);
    expect(drain()).toMatchObject([{ calls: 1, successes: 1 }]);
  });

  it('reuses Call objects, only after a reserve of other calls', () => {
    const { get } = setup([]);
    const seen = new Set<Call>();
    for (let i = 0; i < 1_000; i++) {
      const call = passed(get());
      seen.add(call);
      call.exit(false);
    }
    expect(seen.size).toBeLessThanOrEqual(70);
    const first = passed(get());
    first.exit(false);
    const next = passed(get());
    expect(next).not.toBe(first);
  });
});

describe('statistics', () => {
  it('counts per (direction, remote, protocol, verb, normalised path) and resets on drain', () => {
    const { clock, get, dubbo, drain } = setup([qps('lim', { permitsPerSec: 2 })]);
    const a = passed(get('/api/orders/7?x=1'));
    const b = passed(get('/api/orders/7'));
    answered(get('/api//orders/7/'), 'limited');
    clock.now = 5;
    a.exit(false);
    clock.now = 12;
    b.exit(true);
    passed(dubbo('com.example.StockService', 'reserve', 'web')).exit(false);
    const histogram = new Array<number>(LATENCY_BUCKETS).fill(0);
    histogram[5] = 1;
    histogram[latencyBucket(12)] = 1;
    expect(drain()).toEqual([
      {
        direction: INBOUND,
        remote: 'web',
        protocol: HTTP,
        verb: 'GET',
        name: '/api/orders/7',
        overflow: false,
        second: 0,
        calls: 3,
        successes: 1,
        errors: 1,
        limited: 1,
        broken: 0,
        degraded: 0,
        forced: 0,
        slow: 0,
        latencySumMs: 17,
        latencyMaxMs: 12,
        latencyHistogram: histogram,
      },
      expect.objectContaining({ protocol: DUBBO, verb: 'com.example.StockService', name: 'reserve', calls: 1, successes: 1 }),
    ]);
    expect(drain()).toEqual([]);
  });
});

describe('bounded memory', () => {
  it(`caches at most ${MAX_CHAINS} keys and aliases; the rest share overflow statistics`, () => {
    const { engine, get, drain } = setup([qps('lim', { permitsPerSec: 1_000_000 }, app())]);
    for (let i = 0; i < 100_000; i++) {
      passed(get(`/items/${i}/?page=${i}`, `caller-${i % 3}`)).exit(false); // a path and an alias: 2 entries
      passed(get('/hot', `app-${i}`)).exit(false); // one more caller of /hot: 1 entry
    }
    expect(engine.cacheSizes()).toEqual({ chains: MAX_CHAINS, callers: 0, parkedStats: 0 });
    // 3,333 rounds fill 9,999 entries; round 3,333 caches its path, then the cache is full.
    const entries = drain();
    expect(entries).toHaveLength(3_334 + 3_333 + 1);
    expect(entries.at(-1)).toMatchObject({ overflow: true, calls: 200_000 - 2 * 3_333 - 1, successes: 193_333 });
    expect(entries[0]).toMatchObject({ name: '/items/0', remote: 'caller-0', calls: 1, overflow: false });
    // Draining a full cache evicted the aliases; the paths with calls stayed.
    expect(engine.cacheSizes().chains).toBe(3_334 + 3_333);
    passed(get('/new', 'web')).exit(false);
    expect(drain()).toMatchObject([{ name: '/new', overflow: false, calls: 1 }]);
  });

  it('evicts the keys without calls when a full cache is drained', () => {
    const { engine, get, drain } = setup([concurrency('c', 1, app(), true)]);
    for (const caller of ['a', 'b', 'c']) passed(get('/v', caller)).exit(false);
    for (let i = 3; i < MAX_CHAINS; i++) passed(get(`/p/${i}`)).exit(false);
    drain();
    expect(engine.cacheSizes().chains).toBe(MAX_CHAINS);
    passed(get('/p/7')).exit(false);
    const held = passed(get('/v', 'b'));
    drain();
    expect(engine.cacheSizes().chains).toBe(2);
    // The remaining variant of /v is still found, and the evicted ones come back with their limiter.
    answered(get('/v', 'b'), 'limited', 'c');
    held.exit(false);
    passed(get('/v', 'b')).exit(false);
    const a = passed(get('/v', 'a'));
    answered(get('/v', 'a'), 'limited', 'c');
    a.exit(false);
    expect(engine.cacheSizes().chains).toBe(3);
  });

  it('keeps the per-caller buckets bounded whatever the callers', () => {
    const { engine, get } = setup([qps('lim', { permitsPerSec: 10, perCaller: true }, app())]);
    for (let i = 0; i < 100_000; i++) get('/x', `caller-${i}`);
    expect(engine.cacheSizes().callers).toBeLessThanOrEqual(1_000);
  });

  it('never caches a very long key; a long query string still counts under its path', () => {
    const { engine, get, drain } = setup([]);
    passed(get(`/${'a'.repeat(5_000)}`)).exit(false);
    passed(get(`/${'a'.repeat(5_000)}/`)).exit(false);
    expect(engine.cacheSizes().chains).toBe(0);
    passed(get(`/api/orders/7?${'x'.repeat(5_000)}`)).exit(false);
    expect(engine.cacheSizes().chains).toBe(1);
    expect(drain()).toMatchObject([
      { name: '/api/orders/7', calls: 1 },
      { overflow: true, calls: 2 },
    ]);
  });
});

describe('clocks', () => {
  it('ManualClock is set by hand', () => {
    const clock = new ManualClock(5);
    clock.advance(10);
    expect(clock.now).toBe(15);
  });

  it('TickerClock ticks integer milliseconds while started', async () => {
    const clock = new TickerClock().start();
    const before = clock.now;
    expect(Number.isInteger(before)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(clock.now - before).toBeGreaterThanOrEqual(20);
    clock.stop();
    const stopped = clock.now;
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(clock.now).toBe(stopped);
  });
});
