import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compilePathPattern,
  compileValidPattern,
  matchPath,
  matchSegments,
  pathSegments,
  patternCovers,
  patternsIntersect,
} from '../../src/agent-protocol/path-pattern.js';

const p = compileValidPattern;

describe('compilePathPattern', () => {
  it.each([
    ['/', '/'],
    ['/**', '/**'],
    ['/api/orders', '/api/orders'],
    ['/api/orders/{id}', '/api/orders/*'],
    ['/api/*/items/{itemId}/**', '/api/*/items/*/**'],
    ["/a-b.c_d~e!f&g'h,i;j=k:l@m/%2F", "/a-b.c_d~e!f&g'h,i;j=k:l@m/%2F"],
  ])('accepts %s (canonical %s)', (source, canonical) => {
    expect(p(source).canonical).toBe(canonical);
  });

  it.each([
    ['', 'must not be empty'],
    ['api/orders', 'must start with "/"'],
    ['/api//orders', 'empty segment'],
    ['/api/', 'empty segment'],
    ['/api/**/orders', '"**" is allowed only as the last segment'],
    ['/api/order-*', 'must be whole segments'],
    ['/api/{id}x', 'must be whole segments'],
    ['/api/{1d}', 'segment name'],
    ['/api/{}', 'segment name'],
    ['/api/{id}/{id}', 'used twice'],
    ['/api/..', 'dot segment'],
    ['/api/./x', 'dot segment'],
    ['/api/%zz', '"%" not followed by two hex digits'],
    ['/api/%4', '"%" not followed by two hex digits'],
    ['/(a+)+$', 'globs, not regular expressions'],
    ['/^(a|a)*$', 'globs, not regular expressions'],
    ['/api/[a-z]+', 'globs, not regular expressions'],
    ['/api/orders?id=1', 'globs, not regular expressions'],
    ['/.*', 'must be whole segments'],
    ['/api/a b', 'not allowed in a URL path'],
    ['/api/\u00e9', 'not allowed in a URL path'],
    [`/${'a'.repeat(512)}`, 'at most 512 characters'],
    [`/${Array.from({ length: 33 }, () => 'a').join('/')}`, 'at most 32 segments'],
  ])('refuses %j: %s', (source, message) => {
    const result = compilePathPattern(source);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toContain(message);
  });

  it('refuses a 10,000-character pattern without looking at it', () => {
    const started = performance.now();
    for (let i = 0; i < 1_000; i++) expect(compilePathPattern(`/${'(a+)+'.repeat(2_000)}$`).ok).toBe(false);
    expect(performance.now() - started).toBeLessThan(200);
  });

  it('throws on an invalid pattern where a valid one is required', () => {
    expect(() => compileValidPattern('/a/**/b')).toThrow(/invalid path pattern/);
  });
});

describe('pathSegments', () => {
  it.each([
    ['/', []],
    ['', []],
    ['/api/orders', ['api', 'orders']],
    ['/api//orders/', ['api', 'orders']],
    ['/api/orders?id=1/2', ['api', 'orders']],
    ['/api/orders#x/y', ['api', 'orders']],
    ['/api/./orders/../items', ['api', 'items']],
    ['/../../a', ['a']],
    ['/a%2Fb/c', ['a%2Fb', 'c']],
  ])('%j → %j', (path, segments) => {
    expect(pathSegments(path)).toEqual(segments);
  });
});

describe('matchPath', () => {
  it.each([
    ['/', '/', true],
    ['/', '/a', false],
    ['/**', '/', true],
    ['/**', '/a/b/c', true],
    ['/api/orders', '/api/orders', true],
    ['/api/orders', '/api/orders/', true],
    ['/api/orders', '/api/Orders', false],
    ['/api/orders', '/api/orders/1', false],
    ['/api/orders/{id}', '/api/orders/1', true],
    ['/api/orders/{id}', '/api/orders', false],
    ['/api/orders/{id}', '/api/orders/1/items', false],
    ['/api/orders/*', '/api/orders/1?x=/y', true],
    ['/api/**', '/api', true],
    ['/api/**', '/api/orders/1/items', true],
    ['/api/**', '/apis', false],
    ['/api/*/items', '/api/7/items', true],
    ['/api/*/items', '/api/7/8/items', false],
    ['/(a+)', '/(a+)', false],
  ])('%s matches %s: %s', (pattern, path, expected) => {
    const compiled = compilePathPattern(pattern);
    expect(compiled.ok ? matchPath(compiled.pattern, path) : false).toBe(expected);
  });

  it('is linear in the path: 100,000 segments against many patterns in well under a second', () => {
    const path = `/${Array.from({ length: 100_000 }, () => 'a').join('/')}`;
    const segments = pathSegments(path);
    const patterns = ['/a/**', '/a/*/a', '/*/*/*/*/*/**', '/b/**', `/${Array.from({ length: 32 }, () => '*').join('/')}`].map(p);
    const started = performance.now();
    for (let i = 0; i < 1_000; i++) for (const pattern of patterns) matchSegments(pattern, segments);
    expect(performance.now() - started).toBeLessThan(500);
    expect(patterns.map((pattern) => matchSegments(pattern, segments))).toEqual([true, false, true, false, false]);
  });
});

describe('patternCovers and patternsIntersect', () => {
  it.each([
    // a, b, a covers b, b covers a, intersect
    ['/api/**', '/api/orders/*', true, false, true],
    ['/api/**', '/api', true, false, true],
    ['/api/**', '/api/**', true, true, true],
    ['/**', '/', true, false, true],
    ['/api/*', '/api/orders', true, false, true],
    ['/api/*', '/api/{id}', true, true, true],
    ['/api/*', '/api/*/x', false, false, false],
    ['/api/*/items', '/api/orders/*', false, false, true],
    ['/api/orders', '/api/items', false, false, false],
    ['/api/*/**', '/api/**', false, true, true],
    ['/a/b/**', '/a/*/c', false, false, true],
    ['/a/b/**', '/a/*', false, false, true],
    ['/a/b/c', '/a/**', false, true, true],
    ['/x/**', '/y/**', false, false, false],
  ])('%s vs %s', (a, b, aCoversB, bCoversA, intersect) => {
    expect(patternCovers(p(a), p(b))).toBe(aCoversB);
    expect(patternCovers(p(b), p(a))).toBe(bCoversA);
    expect(patternsIntersect(p(a), p(b))).toBe(intersect);
    expect(patternsIntersect(p(b), p(a))).toBe(intersect);
  });

  // Patterns over the literals a and b; paths over a, b and z (a value no pattern names). Every
  // relation is checked against matching on every path up to one segment longer than any pattern,
  // which decides it exactly for such patterns.
  const patternArb = fc
    .tuple(fc.array(fc.constantFrom('a', 'b', '*', '{x}'), { maxLength: 3 }), fc.boolean())
    .map(([segments, tail]) => {
      const named = segments.map((s, i) => (s === '{x}' ? `{x${i}}` : s));
      return p(`/${[...named, ...(tail ? ['**'] : [])].join('/')}`);
    });
  const paths: string[][] = [[]];
  for (let length = 1; length <= 4; length++) {
    for (const prefix of paths.filter((s) => s.length === length - 1))
      for (const s of ['a', 'b', 'z']) paths.push([...prefix, s]);
  }

  it('agree with matching on every path (exact)', () => {
    fc.assert(
      fc.property(patternArb, patternArb, (a, b) => {
        const ma = paths.map((s) => matchSegments(a, s));
        const mb = paths.map((s) => matchSegments(b, s));
        expect(patternCovers(a, b)).toBe(mb.every((m, i) => !m || ma[i]));
        expect(patternsIntersect(a, b)).toBe(mb.some((m, i) => m && ma[i]));
      }),
      { numRuns: 2_000 },
    );
  });
});
