import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileValidPattern, matchSegments } from '../../src/agent-protocol/path-pattern.js';
import { findConflicts, type Conflict } from '../../src/agent-protocol/rule-conflicts.js';
import { parseRule, ruleTargetKey, type Rule } from '../../src/agent-protocol/rules.js';

const inbound = (resource: object, caller?: string) => ({ direction: 'inbound', ...(caller ? { caller } : {}), resource });
const outbound = (callee: string, resource: object) => ({ direction: 'outbound', callee, resource });
const http = (path: string, method?: string) => ({ type: 'http', ...(method ? { method } : {}), path });
const dubbo = (iface: string, method?: string) => ({ type: 'dubbo', interface: iface, ...(method ? { method } : {}) });
const APP = { type: 'application' };

function rule(
  id: string,
  kind: 'qps' | 'concurrency' | 'errorRatio' | 'slowCallRatio' | 'degrade' | 'forced',
  target: object,
  extra: object = {},
): Rule {
  const body =
    kind === 'qps' || kind === 'concurrency'
      ? { kind: 'limit', limit: kind === 'qps' ? { mode: 'qps', permitsPerSec: 10 } : { mode: 'concurrency', maxConcurrent: 5 } }
      : kind === 'errorRatio'
        ? { kind: 'breaker', breaker: { strategy: 'errorRatio', threshold: 0.5 } }
        : kind === 'slowCallRatio'
          ? { kind: 'breaker', breaker: { strategy: 'slowCallRatio', slowCallMs: 100 } }
          : { kind: 'degrade', force: kind === 'forced' };
  const parsed = parseRule({ id, application: 'orders', target, ...body, ...extra });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  return parsed.rule;
}

const summary = (conflicts: Conflict[]) => conflicts.map((c) => [c.kind, ...c.ruleIds].join(' '));

describe('findConflicts', () => {
  it('reports nothing for rules on different calls', () => {
    const rules = [
      rule('a', 'qps', inbound(http('/api/orders/*', 'GET'))),
      rule('b', 'qps', inbound(http('/api/orders/*', 'POST'))),
      rule('c', 'qps', inbound(http('/api/items/*'))),
      rule('d', 'qps', inbound(http('/api/orders/*/lines'))),
      rule('e', 'qps', inbound(dubbo('com.a.Orders'), 'web')),
      rule('f', 'qps', inbound(dubbo('com.a.Orders'), 'shop')),
      rule('g', 'qps', outbound('stock', APP)),
      rule('h', 'qps', outbound('pricing', APP)),
      rule('i', 'qps', inbound(dubbo('com.a.Orders', 'get'), 'batch')),
      rule('j', 'qps', inbound(dubbo('com.a.Stock'), 'batch')),
    ];
    expect(findConflicts(rules)).toEqual([]);
  });

  it('reports nothing between classes that compose: qps and concurrency, error and slow breakers, shared and per-caller', () => {
    const target = inbound(http('/api/orders/*'));
    const rules = [
      rule('a', 'qps', target),
      rule('b', 'concurrency', target),
      rule('c', 'errorRatio', target),
      rule('d', 'slowCallRatio', target),
      rule('e', 'qps', target, { limit: { mode: 'qps', permitsPerSec: 10, perCaller: true } }),
      rule('f', 'degrade', target),
    ];
    expect(findConflicts(rules)).toEqual([]);
  });

  it('finds duplicates: same class, same canonical target, all ids in one report', () => {
    const conflicts = findConflicts([
      rule('c', 'qps', inbound(http('/api/orders/{id}', 'GET'), 'web')),
      rule('a', 'qps', inbound(http('/api/orders/*', 'GET'), 'web')),
      rule('b', 'qps', inbound(http('/api/orders/{orderId}', 'GET'), 'web'), { limit: { mode: 'qps', permitsPerSec: 99 } }),
    ]);
    expect(conflicts).toEqual([
      {
        kind: 'duplicate',
        ruleIds: ['a', 'b', 'c'],
        message:
          '3 enabled qps limit rules on the same target orders|inbound|web|http|GET|/api/orders/* (a, b, c): every call must pass all of them, so only the strictest takes effect; keep one',
      },
    ]);
  });

  it('ignores disabled rules', () => {
    const target = inbound(APP);
    expect(findConflicts([rule('a', 'qps', target), rule('b', 'qps', target, { enabled: false })])).toEqual([]);
  });

  it.each([
    ['an any-tail pattern and a pattern under it', http('/api/**'), http('/api/orders/*', 'GET')],
    ['an application target and an HTTP one', APP, http('/x')],
    ['an application target and a Dubbo method', APP, dubbo('com.a.Orders', 'get')],
    ['a Dubbo interface and one of its methods', dubbo('com.a.Orders'), dubbo('com.a.Orders', 'get')],
    ['any method and GET', http('/api/orders'), http('/api/orders', 'GET')],
    ['a wildcard segment and a literal', http('/api/*/lines'), http('/api/7/lines')],
  ])('reports an overlap, wider first: %s', (_name, wider, narrower) => {
    const conflicts = findConflicts([rule('a', 'errorRatio', inbound(narrower)), rule('b', 'errorRatio', inbound(wider))]);
    expect(summary(conflicts)).toEqual(['overlap b a']);
    expect(conflicts[0]?.message).toContain('errorRatio breaker rule b (orders|inbound|*|');
    expect(conflicts[0]?.message).toContain('both breakers count those calls');
  });

  it('reports every caller against one caller as an overlap', () => {
    const conflicts = findConflicts([rule('a', 'qps', inbound(APP, 'web')), rule('b', 'qps', inbound(APP))]);
    expect(conflicts).toEqual([
      {
        kind: 'overlap',
        ruleIds: ['b', 'a'],
        message:
          'qps limit rule b (orders|inbound|*|application) covers qps limit rule a (orders|inbound|web|application): a call to both must pass both limits',
      },
    ]);
  });

  it('reports patterns that intersect without covering, ids sorted', () => {
    const conflicts = findConflicts([
      rule('b', 'degrade', inbound(http('/api/orders/*'))),
      rule('a', 'degrade', inbound(http('/api/*/items'))),
    ]);
    expect(summary(conflicts)).toEqual(['overlap a b']);
    expect(conflicts[0]?.message).toContain('share some calls');
    expect(conflicts[0]?.message).toContain('the more specific target');
  });

  it('reports a forced degrade that silences a breaker, a limit or a fallback as a contradiction', () => {
    const conflicts = findConflicts([
      rule('force', 'forced', outbound('stock', dubbo('com.a.Stock'))),
      rule('brk', 'errorRatio', outbound('stock', dubbo('com.a.Stock', 'reserve'))),
      rule('lim', 'concurrency', outbound('stock', dubbo('com.a.Stock'))),
      rule('fb', 'degrade', outbound('stock', dubbo('com.a.Stock', 'get'))),
      // Wider than the forced degrade: it still acts on the other interfaces.
      rule('wide', 'qps', outbound('stock', APP)),
    ]);
    expect(summary(conflicts)).toEqual(['contradiction force brk', 'contradiction force fb', 'contradiction force lim']);
    expect(conflicts[0]?.message).toBe(
      'forced degrade rule force (orders|outbound|stock|dubbo|com.a.Stock|*) answers every call of errorRatio breaker rule brk ' +
        '(orders|outbound|stock|dubbo|com.a.Stock|reserve) with its fallback: that rule never acts while the degrade is forced',
    );
  });

  it('a forced degrade narrower than a fallback rule is an overlap: the forced fallback answers those calls', () => {
    const conflicts = findConflicts([
      rule('a', 'degrade', outbound('stock', APP)),
      rule('b', 'forced', outbound('stock', http('/api/**'))),
    ]);
    expect(summary(conflicts)).toEqual(['overlap a b']);
    expect(conflicts[0]?.message).toContain("those calls get the forced rule's fallback");
  });

  it('a forced and a non-forced degrade on one target are one duplicate', () => {
    expect(summary(findConflicts([rule('a', 'degrade', inbound(APP)), rule('b', 'forced', inbound(APP))]))).toEqual([
      'duplicate a b',
    ]);
  });

  it('orders contradictions, duplicates, overlaps, then by ids, whatever the input order', () => {
    const rules = [
      rule('z', 'forced', inbound(http('/api/**'))),
      rule('y', 'qps', inbound(http('/api/orders'))),
      rule('x', 'qps', inbound(http('/api/orders'))),
      rule('w', 'qps', inbound(http('/api/*'))),
      rule('v', 'errorRatio', inbound(http('/api/x'))),
    ];
    const expected = [
      'contradiction z v',
      'contradiction z w',
      'contradiction z x',
      'contradiction z y',
      'duplicate x y',
      'overlap w x',
      'overlap w y',
    ];
    expect(summary(findConflicts(rules))).toEqual(expected);
    fc.assert(
      fc.property(fc.shuffledSubarray(rules, { minLength: rules.length }), (shuffled) => {
        expect(summary(findConflicts(shuffled))).toEqual(expected);
      }),
      { numRuns: 50 },
    );
  });

  it('handles 10,000 rules of one application without comparing every pair', () => {
    const rules = Array.from({ length: 10_000 }, (_, i) =>
      rule(
        `r${String(i).padStart(5, '0')}`,
        i % 2 ? 'qps' : 'errorRatio',
        inbound(http(`/api/items/${i}/*`, 'GET'), `app${i % 7}`),
      ),
    );
    rules.push(rule('wide', 'qps', inbound(http('/api/**'))));
    const started = performance.now();
    const conflicts = findConflicts(rules);
    expect(performance.now() - started).toBeLessThan(1_500);
    expect(conflicts).toHaveLength(5_000);
    expect(conflicts.every((c) => c.kind === 'overlap' && c.ruleIds[0] === 'wide')).toBe(true);
  });
});

// ---- the same relations, decided by matching calls ---------------------------------------------

// Calls an agent of `orders` could see, over small alphabets that include values no rule names
// (caller `other`, method PUT, path segment `z`, interface method `x`), so that matching every call
// decides covering and intersecting exactly for the rules generated below.
interface Call {
  direction: 'inbound' | 'outbound';
  remote: string | undefined;
  protocol: 'http' | 'dubbo';
  method: string;
  path: string[];
  iface: string;
}

const CALLS: Call[] = [];
{
  const paths: string[][] = [[]];
  for (let length = 1; length <= 4; length++) {
    for (const prefix of paths.filter((s) => s.length === length - 1))
      for (const s of ['a', 'b', 'z']) paths.push([...prefix, s]);
  }
  const remotes: [Call['direction'], string | undefined][] = [
    ['inbound', 'web'],
    ['inbound', 'shop'],
    ['inbound', 'other'],
    ['inbound', undefined],
    ['outbound', 'web'],
    ['outbound', 'shop'],
  ];
  for (const [direction, remote] of remotes) {
    for (const method of ['GET', 'POST', 'PUT'])
      for (const path of paths) CALLS.push({ direction, remote, protocol: 'http', method, path, iface: '' });
    for (const iface of ['com.a.I1', 'com.a.I2']) {
      for (const method of ['m1', 'm2', 'x']) CALLS.push({ direction, remote, protocol: 'dubbo', method, path: [], iface });
    }
  }
}

/** docs/rules.md, "How a call finds its rules". */
function matches(rule: Rule, call: Call): boolean {
  const { target } = rule;
  if (target.direction !== call.direction) return false;
  if (
    target.direction === 'inbound' ? target.caller !== undefined && target.caller !== call.remote : target.callee !== call.remote
  )
    return false;
  const resource = target.resource;
  switch (resource.type) {
    case 'application':
      return true;
    case 'dubbo':
      return call.protocol === 'dubbo' && resource.interface === call.iface && (resource.method ?? call.method) === call.method;
    case 'http':
      return (
        call.protocol === 'http' &&
        (resource.method ?? call.method) === call.method &&
        matchSegments(compileValidPattern(resource.path), call.path)
      );
  }
}

function klass(rule: Rule): string {
  if (rule.kind === 'limit') return `limit ${rule.limit.mode} ${rule.limit.perCaller}`;
  return rule.kind === 'breaker' ? `breaker ${rule.breaker.strategy}` : 'degrade';
}

const forced = (rule: Rule) => rule.kind === 'degrade' && rule.force;

function referenceConflicts(rules: Rule[]): string[] {
  const enabled = rules.filter((r) => r.enabled);
  const sets = new Map(enabled.map((r) => [r.id, CALLS.map((call) => matches(r, call))]));
  const covers = (a: Rule, b: Rule) => sets.get(b.id)?.every((m, i) => !m || sets.get(a.id)?.[i]) ?? false;
  const meet = (a: Rule, b: Rule) => sets.get(b.id)?.some((m, i) => m && sets.get(a.id)?.[i]) ?? false;
  const out: string[] = [];
  const dupes = new Map<string, string[]>();
  for (const r of enabled) {
    const same = enabled.find((o) => klass(o) === klass(r) && covers(o, r) && covers(r, o));
    if (same) dupes.set(same.id, [...(dupes.get(same.id) ?? []), r.id]);
  }
  for (const ids of dupes.values()) if (ids.length > 1) out.push(['duplicate', ...ids.sort()].join(' '));
  for (const a of enabled) {
    for (const b of enabled) {
      if (a.id >= b.id || klass(a) !== klass(b) || (covers(a, b) && covers(b, a)) || !meet(a, b)) continue;
      if ((covers(a, b) && forced(a) && !forced(b)) || (covers(b, a) && forced(b) && !forced(a))) continue;
      if (covers(a, b)) out.push(`overlap ${a.id} ${b.id}`);
      else if (covers(b, a)) out.push(`overlap ${b.id} ${a.id}`);
      else out.push(`overlap ${a.id} ${b.id}`);
    }
  }
  for (const f of enabled.filter(forced)) {
    for (const r of enabled) {
      if (r === f || forced(r) || !covers(f, r) || (r.kind === 'degrade' && covers(r, f))) continue;
      out.push(`contradiction ${f.id} ${r.id}`);
    }
  }
  return out.sort();
}

const targetArb = fc.oneof(
  fc.constant(APP),
  fc
    .tuple(fc.constantFrom('com.a.I1', 'com.a.I2'), fc.option(fc.constantFrom('m1', 'm2'), { nil: undefined }))
    .map(([i, m]) => dubbo(i, m)),
  fc
    .tuple(
      fc.array(fc.constantFrom('a', 'b', '*'), { maxLength: 3 }),
      fc.boolean(),
      fc.option(fc.constantFrom('GET', 'POST'), { nil: undefined }),
    )
    .map(([segments, tail, method]) => http(`/${[...segments, ...(tail ? ['**'] : [])].join('/')}`, method)),
);
const ruleArb = fc.tuple(
  fc.constantFrom('qps', 'concurrency', 'errorRatio', 'degrade', 'forced'),
  fc.oneof(
    fc
      .tuple(fc.option(fc.constantFrom('web', 'shop'), { nil: undefined }), targetArb)
      .map(([caller, resource]) => inbound(resource, caller)),
    fc.tuple(fc.constantFrom('web', 'shop'), targetArb).map(([callee, resource]) => outbound(callee, resource)),
  ),
  fc.boolean(),
);

describe('findConflicts against matching every call', () => {
  it('finds exactly the duplicates, overlaps and contradictions the call sets show', () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { minLength: 1, maxLength: 7 }), (specs) => {
        const rules = specs.map(([kind, target, enabled], i) => rule(`r${i}`, kind, target, { enabled: enabled || i % 3 !== 0 }));
        const found = summary(findConflicts(rules)).sort();
        expect(found).toEqual(referenceConflicts(rules));
        // Equal keys exactly when equal call sets.
        for (const a of rules) {
          for (const b of rules) {
            const same = CALLS.every((call) => matches(a, call) === matches(b, call));
            expect(ruleTargetKey(a) === ruleTargetKey(b)).toBe(same);
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('findConflicts restricted to some rules', () => {
  it('gives exactly the full answer filtered to conflicts involving those rules', () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { minLength: 1, maxLength: 9 }), fc.integer({ min: 0, max: 5 }), (specs, pick) => {
        const rules = specs.map(([kind, target, enabled], i) => rule(`r${i}`, kind, target, { enabled: enabled || i % 3 !== 0 }));
        const ids = new Set(rules.filter((_, i) => i % 6 === pick).map((r) => r.id));
        const full = findConflicts(rules).filter((c) => c.ruleIds.some((id) => ids.has(id)));
        expect(findConflicts(rules, ids)).toEqual(full);
      }),
      { numRuns: 300, seed: 11 },
    );
  });
});
