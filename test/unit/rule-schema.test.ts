import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { APP, BASES, dubbo, hostilePayload, http, inbound, outbound, withValue } from '../support/hostile-rules.js';
import {
  parseRule,
  parseRuleInput,
  RULE_SCHEMA_VERSION,
  ruleJsonSchema,
  ruleTargetKey,
  type RuleIssue,
} from '../../src/agent-protocol/rules.js';

const LIMIT_REJECTION = { http: { status: 429, headers: {}, body: '' }, rpc: { message: 'steward: rate limited' } };
const BREAKER_REJECTION = { http: { status: 503, headers: {}, body: '' }, rpc: { message: 'steward: circuit breaker open' } };
const BREAKER_DEFAULTS = { windowMs: 1_000, minCalls: 5, openMs: 10_000, probes: 1 };

function issuesOf(raw: unknown): RuleIssue[] {
  const result = parseRuleInput(raw);
  return result.ok ? [] : result.issues;
}

describe('valid rules, with defaults applied', () => {
  const cases: [string, object, object][] = [
    [
      'qps limit: burst defaults to one second of permits',
      { kind: 'limit', application: 'orders', target: inbound(APP), limit: { mode: 'qps', permitsPerSec: 2.5 } },
      {
        kind: 'limit',
        application: 'orders',
        enabled: true,
        target: inbound(APP),
        limit: { mode: 'qps', permitsPerSec: 2.5, burst: 3, perCaller: false },
        rejection: LIMIT_REJECTION,
      },
    ],
    [
      'qps limit under 1/s: burst at least 1',
      { kind: 'limit', application: 'orders', target: inbound(APP), limit: { mode: 'qps', permitsPerSec: 0.2 } },
      { limit: { mode: 'qps', permitsPerSec: 0.2, burst: 1, perCaller: false } },
    ],
    [
      'qps limit with queue: burst 1 (Sentinel pacing), warm-up and queue defaults',
      {
        kind: 'limit',
        application: 'orders',
        target: inbound(http('/api/orders/{id}', 'GET'), 'web'),
        limit: { mode: 'qps', permitsPerSec: 100, warmUp: {}, queue: {} },
      },
      {
        target: inbound(http('/api/orders/{id}', 'GET'), 'web'),
        limit: {
          mode: 'qps',
          permitsPerSec: 100,
          burst: 1,
          warmUp: { periodSec: 10, coldFactor: 3 },
          queue: { maxWaitMs: 500 },
          perCaller: false,
        },
      },
    ],
    [
      'qps limit with explicit burst, perCaller and a rejection',
      {
        kind: 'limit',
        application: 'orders',
        enabled: false,
        description: 'protect the database',
        target: inbound(http('/api/**')),
        limit: { mode: 'qps', permitsPerSec: 50, burst: 200, queue: { maxWaitMs: 100 }, perCaller: true },
        rejection: { http: { status: 503, headers: { 'retry-after': '2' }, body: '{"error":"busy"}' }, rpc: { message: 'busy' } },
      },
      {
        enabled: false,
        description: 'protect the database',
        limit: { mode: 'qps', permitsPerSec: 50, burst: 200, queue: { maxWaitMs: 100 }, perCaller: true },
        rejection: { http: { status: 503, headers: { 'retry-after': '2' }, body: '{"error":"busy"}' }, rpc: { message: 'busy' } },
      },
    ],
    [
      'concurrency limit on a Dubbo method',
      {
        kind: 'limit',
        application: 'stock',
        target: inbound(dubbo('com.example.StockService', 'reserve')),
        limit: { mode: 'concurrency', maxConcurrent: 20 },
        rejection: { rpc: { message: 'busy' } },
      },
      {
        limit: { mode: 'concurrency', maxConcurrent: 20, perCaller: false },
        rejection: { http: { status: 429, headers: {}, body: '' }, rpc: { message: 'busy' } },
      },
    ],
    [
      'errorRatio breaker: Sentinel defaults',
      {
        kind: 'breaker',
        application: 'orders',
        target: outbound('stock', dubbo('com.example.StockService')),
        breaker: { strategy: 'errorRatio', threshold: 0.5 },
      },
      {
        kind: 'breaker',
        application: 'orders',
        enabled: true,
        target: outbound('stock', dubbo('com.example.StockService')),
        breaker: { strategy: 'errorRatio', threshold: 0.5, ...BREAKER_DEFAULTS },
        rejection: BREAKER_REJECTION,
      },
    ],
    [
      'slowCallRatio breaker: threshold defaults to 1',
      {
        kind: 'breaker',
        application: 'orders',
        target: outbound('pricing', http('/api/prices/**')),
        breaker: { strategy: 'slowCallRatio', slowCallMs: 800 },
      },
      { breaker: { strategy: 'slowCallRatio', threshold: 1, slowCallMs: 800, ...BREAKER_DEFAULTS } },
    ],
    [
      'errorCount breaker with every field',
      {
        kind: 'breaker',
        application: 'orders',
        target: inbound(APP, 'web'),
        breaker: { strategy: 'errorCount', threshold: 10, windowMs: 60_000, minCalls: 20, openMs: 30_000, probes: 5 },
      },
      { breaker: { strategy: 'errorCount', threshold: 10, windowMs: 60_000, minCalls: 20, openMs: 30_000, probes: 5 } },
    ],
    [
      'degrade: fallback defaults',
      { kind: 'degrade', application: 'orders', target: outbound('recommendations', APP) },
      {
        kind: 'degrade',
        application: 'orders',
        enabled: true,
        target: outbound('recommendations', APP),
        force: false,
        fallback: { http: { status: 200, headers: {}, body: '' }, rpc: { value: null } },
      },
    ],
    [
      'forced degrade with a JSON value and an HTTP answer',
      {
        kind: 'degrade',
        application: 'orders',
        target: outbound('recommendations', APP),
        force: true,
        fallback: {
          http: { status: 200, headers: { 'content-type': 'application/json' }, body: '[]' },
          rpc: { value: { items: [], nested: { a: [1, 'x', true, null] } } },
        },
      },
      {
        force: true,
        fallback: {
          http: { status: 200, headers: { 'content-type': 'application/json' }, body: '[]' },
          rpc: { value: { items: [], nested: { a: [1, 'x', true, null] } } },
        },
      },
    ],
    [
      'a body of exactly 65,536 bytes and 32 headers',
      {
        kind: 'degrade',
        application: 'orders',
        target: inbound(APP),
        fallback: {
          http: { body: 'x'.repeat(65_536), headers: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`x-h${i}`, 'v'])) },
        },
      },
      { kind: 'degrade' },
    ],
  ];

  it.each(cases)('%s', (_name, input, expected) => {
    const result = parseRuleInput(input);
    expect(result).toMatchObject({ ok: true, rule: expected });
  });

  it('a stored rule is the input plus its id', () => {
    const [, input] = cases[0] ?? [];
    const stored = parseRule({ ...input, id: 'f47ac10b-58cc-4372-a567-0e02b2c3d479' });
    const written = parseRuleInput(input);
    expect(stored.ok && written.ok).toBe(true);
    if (stored.ok && written.ok) expect(stored.rule).toEqual({ ...written.rule, id: 'f47ac10b-58cc-4372-a567-0e02b2c3d479' });
    expect(issuesOf({ ...input, id: 'x' })).toEqual([
      { path: 'id', message: 'is not a field here (unknown fields are refused)' },
    ]);
    expect(parseRule(input)).toMatchObject({
      ok: false,
      issues: [{ path: 'id', message: expect.stringContaining('is required') as string }],
    });
  });

  it('every complete example in docs/rules.md is valid, and the stored example is its input with defaults', () => {
    const doc = readFileSync(new URL('../../docs/rules.md', import.meta.url), 'utf8');
    const blocks = [...doc.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
    const rules = blocks.filter((b) => b.trimStart().startsWith('{\n')).map((b) => JSON.parse(b) as Record<string, unknown>);
    expect(rules.length).toBeGreaterThanOrEqual(7);
    for (const rule of rules) {
      const result = 'id' in rule ? parseRule(rule) : parseRuleInput(rule);
      expect(result, JSON.stringify(rule)).toMatchObject({ ok: true });
    }
    const [first, stored] = rules;
    const written = parseRuleInput(first);
    expect(written.ok && { ...written.rule, id: stored?.['id'] }).toEqual(stored);
  });
});

describe('refused rules: field paths and allowed ranges in the messages', () => {
  const limit = (extra: object) => ({ kind: 'limit', application: 'orders', target: inbound(APP), ...extra });
  const breaker = (spec: object) => ({ kind: 'breaker', application: 'orders', target: inbound(APP), breaker: spec });
  it.each([
    ['unknown kind', { kind: 'throttle' }, 'kind', 'kind must be one of: limit, breaker, degrade'],
    ['missing kind', { application: 'orders' }, 'kind', 'kind must be one of: limit, breaker, degrade'],
    [
      'upper-case application',
      limit({ application: 'Orders', limit: { mode: 'qps', permitsPerSec: 1 } }),
      'application',
      'lower-case',
    ],
    ['missing limit', limit({}), 'limit', 'is required and must be an object'],
    ['qps of 0', limit({ limit: { mode: 'qps', permitsPerSec: 0 } }), 'limit.permitsPerSec', 'from 0.001 to 1000000'],
    ['qps as a string', limit({ limit: { mode: 'qps', permitsPerSec: '100' } }), 'limit.permitsPerSec', 'from 0.001 to 1000000'],
    ['burst 1.5', limit({ limit: { mode: 'qps', permitsPerSec: 1, burst: 1.5 } }), 'limit.burst', 'integer from 1 to 1000000'],
    [
      'burst with concurrency',
      limit({ limit: { mode: 'concurrency', maxConcurrent: 1, burst: 1 } }),
      'limit.burst',
      'is not a field here',
    ],
    ['unknown mode', limit({ limit: { mode: 'threads' } }), 'limit.mode', 'mode must be one of: qps, concurrency'],
    [
      'coldFactor 1',
      limit({ limit: { mode: 'qps', permitsPerSec: 1, warmUp: { coldFactor: 1 } } }),
      'limit.warmUp.coldFactor',
      'greater than 1 and at most 10',
    ],
    [
      'queue wait 60 s',
      limit({ limit: { mode: 'qps', permitsPerSec: 1, queue: { maxWaitMs: 60_000 } } }),
      'limit.queue.maxWaitMs',
      'integer from 1 to 30000 (ms)',
    ],
    [
      'perCaller on an outbound target',
      { ...limit({ limit: { mode: 'qps', permitsPerSec: 1, perCaller: true } }), target: outbound('stock', APP) },
      'limit.perCaller',
      'inbound targets only',
    ],
    [
      'perCaller with a caller',
      { ...limit({ limit: { mode: 'concurrency', maxConcurrent: 1, perCaller: true } }), target: inbound(APP, 'web') },
      'limit.perCaller',
      'cannot be combined with target.caller',
    ],
    ['ratio 0', breaker({ strategy: 'errorRatio', threshold: 0 }), 'breaker.threshold', 'greater than 0 and at most 1'],
    ['ratio 1.01', breaker({ strategy: 'errorRatio', threshold: 1.01 }), 'breaker.threshold', 'greater than 0 and at most 1'],
    ['count 0', breaker({ strategy: 'errorCount', threshold: 0 }), 'breaker.threshold', 'integer from 1 to 1000000'],
    [
      'missing slowCallMs',
      breaker({ strategy: 'slowCallRatio' }),
      'breaker.slowCallMs',
      'is required and must be an integer from 1',
    ],
    [
      'slowCallMs on errorRatio',
      breaker({ strategy: 'errorRatio', threshold: 0.5, slowCallMs: 5 }),
      'breaker.slowCallMs',
      'is not a field here',
    ],
    [
      'window 50 ms',
      breaker({ strategy: 'errorCount', threshold: 1, windowMs: 50 }),
      'breaker.windowMs',
      'from 100 to 3600000 (ms)',
    ],
    [
      'window not a multiple of 10',
      breaker({ strategy: 'errorCount', threshold: 1, windowMs: 1_005 }),
      'breaker.windowMs',
      'a multiple of 10',
    ],
    [
      'window over an hour',
      breaker({ strategy: 'errorCount', threshold: 1, windowMs: 3_600_010 }),
      'breaker.windowMs',
      'from 100 to 3600000',
    ],
    ['probes 0', breaker({ strategy: 'errorCount', threshold: 1, probes: 0 }), 'breaker.probes', 'integer from 1 to 100'],
    ['unknown strategy', breaker({ strategy: 'consecutive' }), 'breaker.strategy', 'errorRatio, slowCallRatio, errorCount'],
    [
      'regex path',
      { kind: 'degrade', application: 'o', target: inbound(http('/(a+)+$')) },
      'target.resource.path',
      'globs, not regular expressions',
    ],
    [
      'outbound without callee',
      { kind: 'degrade', application: 'o', target: { direction: 'outbound', resource: APP } },
      'target.callee',
      'is required',
    ],
    [
      'caller on outbound',
      { kind: 'degrade', application: 'o', target: { ...outbound('stock', APP), caller: 'web' } },
      'target.caller',
      'is not a field here',
    ],
    [
      'unknown resource type',
      { kind: 'degrade', application: 'o', target: inbound({ type: 'grpc' }) },
      'target.resource.type',
      'type must be one of: application, dubbo, http',
    ],
    [
      'bad Dubbo interface',
      { kind: 'degrade', application: 'o', target: inbound(dubbo('com..Bad')) },
      'target.resource.interface',
      'Java interface name',
    ],
    [
      'lower-case HTTP method',
      { kind: 'degrade', application: 'o', target: inbound(http('/a', 'get')) },
      'target.resource.method',
      'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS',
    ],
    [
      'status 700',
      { kind: 'degrade', application: 'o', target: inbound(APP), fallback: { http: { status: 700 } } },
      'fallback.http.status',
      'integer from 200 to 599',
    ],
    [
      'upper-case header name',
      { kind: 'degrade', application: 'o', target: inbound(APP), fallback: { http: { headers: { 'Retry-After': '1' } } } },
      'fallback.http.headers.Retry-After',
      'lower-case HTTP tokens',
    ],
    [
      'header with a line break (response splitting)',
      {
        kind: 'degrade',
        application: 'o',
        target: inbound(APP),
        fallback: { http: { headers: { 'x-a': 'a\r\nset-cookie: x' } } },
      },
      'fallback.http.headers.x-a',
      'no line breaks',
    ],
    [
      'framing header',
      {
        kind: 'degrade',
        application: 'o',
        target: inbound(APP),
        fallback: { http: { headers: { 'transfer-encoding': 'chunked' } } },
      },
      'fallback.http.headers.transfer-encoding',
      'cannot be configured',
    ],
    [
      'body of 65,537 bytes in 21,846 characters',
      { kind: 'degrade', application: 'o', target: inbound(APP), fallback: { http: { body: `${'€'.repeat(21_845)}ab` } } },
      'fallback.http.body',
      'at most 65536 bytes (UTF-8)',
    ],
    [
      'fallback value nested 17 deep',
      {
        kind: 'degrade',
        application: 'o',
        target: inbound(APP),
        fallback: { rpc: { value: JSON.parse(`${'['.repeat(17)}${']'.repeat(17)}`) as unknown } },
      },
      'fallback.rpc.value.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0',
      'at most 16 levels',
    ],
    [
      '__proto__ inside the fallback value',
      {
        kind: 'degrade',
        application: 'o',
        target: inbound(APP),
        fallback: { rpc: { value: JSON.parse('{"a":[{"__proto__":{"polluted":true}}]}') as unknown } },
      },
      'fallback.rpc.value.a.0.__proto__',
      'prototype pollution',
    ],
    ['not an object', 'limit', '', 'must be a JSON object'],
  ])('%s', (_name, input, path, message) => {
    const issues = issuesOf(input);
    expect(issues, JSON.stringify(issues)).toContainEqual({ path, message: expect.stringContaining(message) as string });
  });

  it('reports every problem at once', () => {
    const issues = issuesOf({
      kind: 'limit',
      application: 'X',
      target: inbound(APP),
      limit: { mode: 'qps', permitsPerSec: -1, bogus: 1 },
    });
    expect(issues.map((i) => i.path)).toEqual(['application', 'limit.permitsPerSec', 'limit.bogus']);
  });

  it('refuses prototype-pollution keys before the schema, even where the schema would drop them', () => {
    const headers = JSON.parse(
      '{"kind":"degrade","application":"o","target":{"direction":"inbound","resource":{"type":"application"}},"fallback":{"http":{"headers":{"__proto__":"x"}}}}',
    ) as unknown;
    expect(issuesOf(headers)).toEqual([
      {
        path: 'fallback.http.headers.__proto__',
        message: 'the key "__proto__" is refused anywhere in a rule (prototype pollution)',
      },
    ]);
    expect(issuesOf(JSON.parse('{"constructor":{"prototype":{"x":1}}}'))).toContainEqual({
      path: 'constructor',
      message: expect.stringContaining('prototype pollution') as string,
    });
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});

describe('keys and JSON Schema', () => {
  const key = (target: object) => {
    const result = parseRuleInput({ kind: 'degrade', application: 'orders', target });
    if (!result.ok) throw new Error(JSON.stringify(result.issues));
    return ruleTargetKey(result.rule);
  };

  it.each([
    [inbound(APP), 'orders|inbound|*|application'],
    [inbound(http('/api/orders/{id}', 'GET'), 'web'), 'orders|inbound|web|http|GET|/api/orders/*'],
    [inbound(http('/api/orders/*', 'GET'), 'web'), 'orders|inbound|web|http|GET|/api/orders/*'],
    [inbound(http('/**')), 'orders|inbound|*|http|*|/**'],
    [
      outbound('stock', dubbo('com.example.StockService', 'reserve')),
      'orders|outbound|stock|dubbo|com.example.StockService|reserve',
    ],
    [outbound('stock', dubbo('com.example.StockService')), 'orders|outbound|stock|dubbo|com.example.StockService|*'],
  ])('%j → %s', (target, expected) => {
    expect(key(target)).toBe(expected);
  });

  it('describes writes and stored rules for OpenAPI', () => {
    expect(RULE_SCHEMA_VERSION).toBe(1);
    const input = ruleJsonSchema() as { oneOf: { properties: Record<string, unknown>; additionalProperties: boolean }[] };
    expect(input.oneOf).toHaveLength(3);
    expect(input.oneOf.every((o) => o.additionalProperties === false && !('id' in o.properties))).toBe(true);
    const text = JSON.stringify(input);
    for (const fragment of ['"const":"limit"', '"const":"breaker"', '"const":"degrade"', '"maximum":3600000', '"default":429']) {
      expect(text).toContain(fragment);
    }
    const stored = ruleJsonSchema('stored') as typeof input;
    expect(stored.oneOf.every((o) => 'id' in o.properties)).toBe(true);
  });
});

// ---- 1,000+ malformed and hostile payloads --------------------------------------------------------

describe('malformed and hostile payloads', () => {
  it('the bases themselves are valid', () => {
    for (const base of Object.values(BASES)) expect(parseRuleInput(base)).toMatchObject({ ok: true });
  });

  it('refuses 1,500 generated payloads, each with a located message, in bounded time', () => {
    let count = 0;
    let parseMs = 0;
    fc.assert(
      fc.property(hostilePayload, (payload) => {
        const started = performance.now();
        const result = parseRuleInput(payload);
        parseMs += performance.now() - started;
        count++;
        expect(result.ok).toBe(false);
        if (result.ok) return;
        expect(result.issues.length).toBeGreaterThan(0);
        expect(result.issues.length).toBeLessThanOrEqual(50);
        for (const issue of result.issues) {
          expect(typeof issue.path).toBe('string');
          expect(issue.message.length).toBeGreaterThan(0);
        }
        expect(result.issues.some((i) => i.path !== '' || i.message !== '')).toBe(true);
      }),
      { numRuns: 1_500, seed: 4 },
    );
    expect(count).toBeGreaterThanOrEqual(1_000);
    // No catastrophic backtracking or unbounded walk: all of them together in well under 2 s.
    expect(parseMs).toBeLessThan(2_000);
  });

  it('refuses regex bombs in path patterns as globs, quickly', () => {
    const bombs = [
      '/(a+)+$',
      '/^(a|a)*$',
      '/(x+x+)+y',
      `/${'(a+)+'.repeat(2_000)}$`,
      `/${'a'.repeat(10_000)}!`,
      `/${'a/'.repeat(5_000)}b`,
    ];
    const started = performance.now();
    for (const path of bombs) {
      const issues = issuesOf(withValue('qps', ['target', 'resource', 'path'], path));
      expect(issues).toHaveLength(1);
      expect(issues[0]?.path).toBe('target.resource.path');
    }
    expect(performance.now() - started).toBeLessThan(100);
  });
});
