import fc from 'fast-check';

// Rules that are valid, and a generator of malformed or hostile variants of them: the unit test
// feeds them to the schema, the governance integration test to the real API.

export const inbound = (resource: object, caller?: string) => ({ direction: 'inbound', ...(caller ? { caller } : {}), resource });
export const outbound = (callee: string, resource: object) => ({ direction: 'outbound', callee, resource });
export const http = (path: string, method?: string) => ({ type: 'http', ...(method ? { method } : {}), path });
export const dubbo = (iface: string, method?: string) => ({ type: 'dubbo', interface: iface, ...(method ? { method } : {}) });
export const APP = { type: 'application' };

export const BASES: Record<string, object> = {
  qps: {
    kind: 'limit',
    application: 'orders',
    description: 'base',
    target: inbound(http('/api/orders/{id}', 'GET'), 'web'),
    limit: { mode: 'qps', permitsPerSec: 100, burst: 10, warmUp: { periodSec: 10, coldFactor: 3 }, queue: { maxWaitMs: 500 } },
    rejection: { http: { status: 429, headers: { 'retry-after': '1' }, body: 'slow down' }, rpc: { message: 'limited' } },
  },
  concurrency: {
    kind: 'limit',
    application: 'stock',
    target: inbound(dubbo('com.example.StockService', 'reserve')),
    limit: { mode: 'concurrency', maxConcurrent: 10, perCaller: true },
  },
  errorRatio: {
    kind: 'breaker',
    application: 'orders',
    target: outbound('stock', dubbo('com.example.StockService')),
    breaker: { strategy: 'errorRatio', threshold: 0.5, windowMs: 10_000, minCalls: 20, openMs: 5_000, probes: 3 },
  },
  slowCallRatio: {
    kind: 'breaker',
    application: 'orders',
    target: outbound('pricing', http('/api/prices/**')),
    breaker: { strategy: 'slowCallRatio', threshold: 0.8, slowCallMs: 800 },
  },
  errorCount: {
    kind: 'breaker',
    application: 'orders',
    target: inbound(APP),
    breaker: { strategy: 'errorCount', threshold: 5 },
  },
  degrade: {
    kind: 'degrade',
    application: 'orders',
    target: outbound('recommendations', APP),
    force: true,
    fallback: {
      http: { status: 200, headers: { 'content-type': 'application/json' }, body: '[]' },
      rpc: { value: { items: [] } },
    },
  },
};

const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** A copy of a base rule with the value at `path` replaced (every object on the path exists). */
export function withValue(base: string, path: readonly string[], value: unknown): Record<string, unknown> {
  const rule = clone(BASES[base]) as Record<string, unknown>;
  let node = rule;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string, unknown>;
  node[path[path.length - 1] ?? ''] = value;
  return rule;
}

const notNumber = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.integer(), { maxKeys: 2 }),
);
const notString = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 2 }),
  fc.constant({}),
);
const notBoolean = fc.oneof(fc.constantFrom('true', 'false', 0, 1, null), fc.string({ maxLength: 5 }));
const jsHostile = fc.constantFrom<unknown>(NaN, Infinity, -Infinity, () => 1, new Date(0), 10n, Symbol('x'), new Map(), /a+/);

function intOutside(min: number, max: number) {
  return fc.oneof(
    fc.integer({ max: min - 1, min: -1e12 }),
    fc.integer({ min: max + 1, max: 1e15 }),
    fc.double({ min, max, noInteger: true, noNaN: true }),
    notNumber,
    jsHostile,
  );
}
const ratioOutside = fc.oneof(
  fc.double({ max: 0, noNaN: true }),
  fc.double({ min: 1, minExcluded: true, noNaN: true }),
  notNumber,
  jsHostile,
);
const badApplication = fc.oneof(
  fc.constant(''),
  fc.string({ maxLength: 10 }).map((s) => `Orders${s}`),
  fc.string({ maxLength: 10 }).map((s) => `-${s}`),
  fc.string({ minLength: 1, maxLength: 5 }).map((s) => `a ${s}`),
  fc.constant('a'.repeat(129)),
  fc.constant('x'.repeat(100_000)),
  notString,
);
const SAFE = fc.constantFrom('api', 'orders', 'a', 'v1');
const badPath = fc.oneof(
  fc.constantFrom(
    '/(a+)+$',
    '/^(a|a)*$',
    '/(x+x+)+y',
    '/(.*a){20}',
    '/[a-z]+/[0-9]*',
    '/api/.*',
    '/api/(?<id>[0-9]+)',
    '/api\\/orders',
    '/api/**/orders',
    'api/orders',
    '',
    '/api//orders',
    '/api/',
    `/${'a'.repeat(10_000)}`,
    `/${'(a+)+'.repeat(2_000)}`,
    `/${Array.from({ length: 5_000 }, () => 'a').join('/')}`,
    '/**'.repeat(100),
    `/{${'a'.repeat(1_000)}}`,
    '/a\u0000b',
    '/\u{1F4A3}',
  ),
  fc
    .tuple(SAFE, fc.constantFrom('(', ')', '+', '$', '[', ']', '^', '|', '\\', '?', '{', '}', '*', ' ', '"', '<', '#'), SAFE)
    .map(([a, c, b]) => `/${a}/${b}${c}${a}`),
  fc.string({ maxLength: 20 }).map((s) => `x${s}`),
  notString,
);
const longString = fc.integer({ min: 1, max: 4 }).map((n) => 'x'.repeat(n * 100_000));

/** [base, path, bad values]: every generated value is outside what the field accepts. */
const MUTATIONS: [string, string[], fc.Arbitrary<unknown>][] = [
  ['qps', ['application'], badApplication],
  ['qps', ['enabled'], notBoolean],
  ['qps', ['description'], fc.oneof(notString, fc.constant('d'.repeat(1_025)), longString)],
  ['qps', ['target'], fc.oneof(notString, fc.constant([]))],
  ['qps', ['target', 'direction'], fc.oneof(fc.constantFrom('in', 'INBOUND', 'both', ''), notString)],
  ['qps', ['target', 'caller'], badApplication],
  ['qps', ['target', 'resource', 'type'], fc.oneof(fc.constantFrom('grpc', 'HTTP', 'app', ''), notString)],
  ['qps', ['target', 'resource', 'method'], fc.oneof(fc.constantFrom('get', 'CONNECT', 'TRACE', 'ANY', '*'), notString)],
  ['qps', ['target', 'resource', 'path'], badPath],
  ['qps', ['limit', 'mode'], fc.oneof(fc.constantFrom('QPS', 'thread', 'rate'), notString)],
  [
    'qps',
    ['limit', 'permitsPerSec'],
    fc.oneof(
      fc.double({ max: 0.000_999, noNaN: true }),
      fc.double({ min: 1_000_000, minExcluded: true, noNaN: true }),
      notNumber,
      jsHostile,
    ),
  ],
  ['qps', ['limit', 'burst'], intOutside(1, 1_000_000)],
  ['qps', ['limit', 'warmUp', 'periodSec'], intOutside(1, 3_600)],
  [
    'qps',
    ['limit', 'warmUp', 'coldFactor'],
    fc.oneof(fc.double({ max: 1, noNaN: true }), fc.double({ min: 10, minExcluded: true, noNaN: true }), notNumber),
  ],
  ['qps', ['limit', 'queue'], notString.filter((v) => typeof v !== 'object' || v === null || Array.isArray(v))],
  ['qps', ['limit', 'queue', 'maxWaitMs'], intOutside(1, 30_000)],
  ['qps', ['limit', 'perCaller'], notBoolean],
  ['qps', ['rejection', 'http', 'status'], intOutside(200, 599)],
  [
    'qps',
    ['rejection', 'http', 'body'],
    fc.oneof(
      notString,
      fc.integer({ min: 65_537, max: 300_000 }).map((n) => 'b'.repeat(n)),
    ),
  ],
  [
    'qps',
    ['rejection', 'http', 'headers'],
    fc.oneof(
      fc.constantFrom('x', 1, null, [['a', 'b']]),
      fc.integer({ min: 33, max: 500 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-${i}`, 'v']))),
      fc.string({ minLength: 1, maxLength: 10 }).map((s) => ({ [`X-${s}`]: 'v' })),
      fc.constantFrom('content-length', 'transfer-encoding', 'connection', 'host', 'upgrade').map((h) => ({ [h]: '1' })),
      fc.constantFrom('\r\n', '\n', '\u0000', '\u00e9').map((c) => ({ 'x-a': `a${c}b` })),
      fc.constant({ 'x-a': 'v'.repeat(4_097) }),
      fc.constant(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`x-${i}`, 'v'.repeat(4_000)]))),
      notString.map((v) => ({ 'x-a': v })),
    ),
  ],
  ['qps', ['rejection', 'rpc', 'message'], fc.oneof(fc.constant(''), fc.constant('m'.repeat(1_025)), notString)],
  ['concurrency', ['limit', 'maxConcurrent'], intOutside(1, 100_000)],
  [
    'concurrency',
    ['target', 'resource', 'interface'],
    fc.oneof(fc.constantFrom('', '1abc', 'a..b', 'a.b.', 'a-b', 'a b', 'a'.repeat(257)), notString),
  ],
  [
    'concurrency',
    ['target', 'resource', 'method'],
    fc.oneof(fc.constantFrom('', '1get', 'get()', 'a.b', 'g'.repeat(129)), notString),
  ],
  ['errorRatio', ['breaker', 'strategy'], fc.oneof(fc.constantFrom('errorrate', 'ERROR_RATIO', 'consecutiveErrors'), notString)],
  ['errorRatio', ['breaker', 'threshold'], ratioOutside],
  [
    'errorRatio',
    ['breaker', 'windowMs'],
    fc.oneof(
      intOutside(100, 3_600_000),
      fc.integer({ min: 10, max: 360_000 }).map((n) => n * 10 + 5),
    ),
  ],
  ['errorRatio', ['breaker', 'minCalls'], intOutside(1, 100_000)],
  ['errorRatio', ['breaker', 'openMs'], intOutside(100, 3_600_000)],
  ['errorRatio', ['breaker', 'probes'], intOutside(1, 100)],
  ['errorRatio', ['target', 'callee'], badApplication],
  ['slowCallRatio', ['breaker', 'threshold'], ratioOutside],
  ['slowCallRatio', ['breaker', 'slowCallMs'], intOutside(1, 600_000)],
  ['errorCount', ['breaker', 'threshold'], intOutside(1, 1_000_000)],
  ['degrade', ['force'], notBoolean],
  ['degrade', ['fallback', 'http', 'status'], intOutside(200, 599)],
  ['degrade', ['fallback', 'http', 'body'], fc.integer({ min: 21_846, max: 40_000 }).map((n) => '€'.repeat(n))],
  [
    'degrade',
    ['fallback', 'rpc', 'value'],
    fc.oneof(
      fc.integer({ min: 17, max: 5_000 }).map((n) => JSON.parse(`${'['.repeat(n)}${']'.repeat(n)}`) as unknown),
      fc.integer({ min: 17, max: 2_000 }).map((n) => JSON.parse(`${'{"a":'.repeat(n)}1${'}'.repeat(n)}`) as unknown),
      fc.integer({ min: 65_537, max: 200_000 }).map((n) => 'v'.repeat(n)),
      fc.integer({ min: 10_001, max: 30_000 }).map((n) => Array.from({ length: n }, () => 0)),
      jsHostile,
    ),
  ],
];

const FORBIDDEN = ['__proto__', 'constructor', 'prototype'] as const;
/** Object locations in the bases where a forbidden key is injected. */
const LOCATIONS: [string, string[]][] = [
  ['qps', []],
  ['qps', ['target']],
  ['qps', ['target', 'resource']],
  ['qps', ['limit']],
  ['qps', ['limit', 'warmUp']],
  ['qps', ['rejection', 'http']],
  ['qps', ['rejection', 'http', 'headers']],
  ['errorRatio', ['breaker']],
  ['degrade', ['fallback']],
  ['degrade', ['fallback', 'rpc']],
  ['degrade', ['fallback', 'rpc', 'value']],
];
const PLACEHOLDER = 'zzPLACEHOLDERzz';

const protoPollution = fc
  .tuple(
    fc.constantFrom(...LOCATIONS),
    fc.constantFrom(...FORBIDDEN),
    fc.jsonValue({ maxDepth: 2 }),
    fc.integer({ min: 0, max: 6 }),
  )
  .map(([[base, path], key, value, depth]) => {
    const rule = clone(BASES[base]) as Record<string, unknown>;
    let node = rule;
    for (const step of path) node = node[step] as Record<string, unknown>;
    // Deeper inside the JSON fallback value, the key sits under `depth` more objects.
    let holder = node;
    if (path[path.length - 1] === 'value') {
      for (let i = 0; i < depth; i++) {
        const inner: Record<string, unknown> = {};
        holder[`k${i}`] = inner;
        holder = inner;
      }
    }
    holder[PLACEHOLDER] = value;
    // JSON.parse makes `__proto__` a real own key, as a request body would.
    return JSON.parse(JSON.stringify(rule).replace(`"${PLACEHOLDER}"`, JSON.stringify(key))) as unknown;
  });

const unknownField = fc
  .tuple(
    fc.constantFrom(...LOCATIONS.filter(([, path]) => !['headers', 'value'].includes(path[path.length - 1] ?? ''))),
    fc.string({ minLength: 1, maxLength: 12 }),
    fc.jsonValue({ maxDepth: 1 }),
  )
  .map(([[base, path], key, value]) => withValue(base, [...path, `x_${key}`], value));

const wrongKind = fc
  .tuple(
    fc.constantFrom(...Object.keys(BASES)),
    fc.oneof(
      fc.string({ maxLength: 10 }).filter((k) => !['limit', 'breaker', 'degrade'].includes(k)),
      fc.constantFrom('Limit', 'LIMIT', 'circuitBreaker', 'flow'),
      notString,
    ),
  )
  .map(([base, kind]) => withValue(base, ['kind'], kind));

// A valid body of one kind under another kind's name: fields that do not belong are refused.
const swappedKind = fc
  .tuple(fc.constantFrom(...Object.keys(BASES)), fc.constantFrom('limit', 'breaker', 'degrade'))
  .filter(([base, kind]) => (BASES[base] as { kind: string }).kind !== kind)
  .map(([base, kind]) => withValue(base, ['kind'], kind));

const deepPayload = fc
  .tuple(fc.integer({ min: 25, max: 20_000 }), fc.constantFrom('[', '{"d":'), fc.constantFrom('description', 'target', 'x'))
  .map(([depth, open, field]) => {
    const close = open === '[' ? ']' : '}';
    return JSON.parse(`{"kind":"limit","${field}":${open.repeat(depth)}1${close.repeat(depth)}}`) as unknown;
  });

const hugePayload = fc.oneof(
  fc.integer({ min: 20_001, max: 60_000 }).map((n) => ({ ...BASES['qps'], description: Array.from({ length: n }, () => 1) })),
  fc.integer({ min: 3, max: 6 }).map((n) => ({ ...BASES['qps'], description: 'x'.repeat(n * 100_000) })),
);

const notAnObject = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.array(fc.jsonValue(), { maxLength: 3 }),
);

const mutation = fc.constantFrom(...MUTATIONS).chain(([base, path, bad]) => bad.map((value) => withValue(base, path, value)));

export const hostilePayload: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: mutation, weight: 10 },
  { arbitrary: protoPollution, weight: 3 },
  { arbitrary: unknownField, weight: 2 },
  { arbitrary: wrongKind, weight: 1 },
  { arbitrary: swappedKind, weight: 1 },
  { arbitrary: deepPayload, weight: 1 },
  { arbitrary: hugePayload, weight: 1 },
  { arbitrary: notAnObject, weight: 1 },
);
