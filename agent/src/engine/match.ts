import { compileValidPattern, matchSegments, pathSegments, type PathPattern } from '../../../src/agent-protocol/path-pattern.js';
import { type RuleTarget } from '../../../src/agent-protocol/rules.js';
import { DUBBO, HTTP, INBOUND, OUTBOUND, type Direction, type Protocol } from './types.js';

const APPLICATION_RESOURCE = 0;
const DUBBO_RESOURCE = 1;
const HTTP_RESOURCE = 2;

/** A rule's target compiled for matching calls (docs/rules.md "How a call finds its rules"). */
export interface Matcher {
  readonly id: string;
  readonly direction: Direction;
  /** The caller (inbound; undefined: every caller) or the callee (outbound). */
  readonly remote: string | undefined;
  readonly resource: number;
  /** HTTP method (undefined: every method), or Dubbo interface. */
  readonly verb: string | undefined;
  /** Dubbo method (undefined: every method). */
  readonly method: string | undefined;
  readonly pattern: PathPattern | undefined;
  /** "Most specific" step 2: Dubbo with method 2, Dubbo interface or HTTP 1, application 0. */
  readonly rank: number;
}

export function compileTarget(id: string, target: RuleTarget): Matcher {
  const direction = target.direction === 'inbound' ? INBOUND : OUTBOUND;
  const remote = target.direction === 'inbound' ? target.caller : target.callee;
  const resource = target.resource;
  switch (resource.type) {
    case 'application':
      return {
        id,
        direction,
        remote,
        resource: APPLICATION_RESOURCE,
        verb: undefined,
        method: undefined,
        pattern: undefined,
        rank: 0,
      };
    case 'dubbo':
      return {
        id,
        direction,
        remote,
        resource: DUBBO_RESOURCE,
        verb: resource.interface,
        method: resource.method,
        pattern: undefined,
        rank: resource.method === undefined ? 1 : 2,
      };
    case 'http':
      return {
        id,
        direction,
        remote,
        resource: HTTP_RESOURCE,
        verb: resource.method,
        method: undefined,
        pattern: compileValidPattern(resource.path),
        rank: 1,
      };
  }
}

/** Whether the rule matches a call in its direction; `segments` is the HTTP path, split. */
export function matches(m: Matcher, remote: string, protocol: Protocol, verb: string, name: string, segments: readonly string[]) {
  // An unknown caller ('') matches only rules without caller; an unknown callee matches nothing.
  if (m.remote !== undefined && m.remote !== remote) return false;
  switch (m.resource) {
    case APPLICATION_RESOURCE:
      return true;
    case DUBBO_RESOURCE:
      return protocol === DUBBO && m.verb === verb && (m.method === undefined || m.method === name);
    default:
      return protocol === HTTP && (m.verb === undefined || m.verb === verb) && matchSegments(m.pattern!, segments);
  }
}

/** Code-unit order, as docs/rules.md orders rule ids (not localeCompare). */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// HTTP pattern positions for "most specific" step 3: a literal beats a wildcard beats the pattern's
// end beats `**`.
const LITERAL = 3;
const WILDCARD = 2;
const END = 1;
const TAIL = 0;

function positionRank(pattern: PathPattern, i: number): number {
  const segment = pattern.segments[i];
  if (segment !== undefined) return segment.type === 'literal' ? LITERAL : WILDCARD;
  return pattern.tail ? TAIL : END;
}

/**
 * Negative when `a` is more specific than `b` (two rules matching one call), docs/rules.md "Most
 * specific": caller, then resource kind, then HTTP pattern left to right and method, then the lower id.
 */
export function compareSpecificity(a: Matcher, b: Matcher): number {
  const callerA = a.direction === INBOUND && a.remote !== undefined;
  const callerB = b.direction === INBOUND && b.remote !== undefined;
  if (callerA !== callerB) return callerA ? -1 : 1;
  if (a.rank !== b.rank) return b.rank - a.rank;
  if (a.pattern !== undefined && b.pattern !== undefined) {
    const positions = Math.min(a.pattern.segments.length, b.pattern.segments.length);
    for (let i = 0; i <= positions; i++) {
      const difference = positionRank(b.pattern, i) - positionRank(a.pattern, i);
      if (difference !== 0) return difference;
    }
    if ((a.verb === undefined) !== (b.verb === undefined)) return a.verb === undefined ? 1 : -1;
  }
  return compareIds(a.id, b.id);
}

const SLASH = 0x2f;
const DOT = 0x2e;
const QUESTION = 0x3f;
const HASH = 0x23;

/**
 * Whether a request target is already the request path docs/rules.md matches patterns against: it
 * starts with `/`, has no query or fragment, and no empty, `.` or `..` segment. Most targets are,
 * and then the engine uses the string it was given (no allocation).
 */
export function isNormalPath(target: string): boolean {
  const n = target.length;
  if (n === 0 || target.charCodeAt(0) !== SLASH) return false;
  if (n === 1) return true;
  let start = 1;
  for (let i = 1; i <= n; i++) {
    const c = i < n ? target.charCodeAt(i) : SLASH;
    if (c === SLASH) {
      const length = i - start;
      if (length === 0) return false;
      if (length <= 2 && target.charCodeAt(start) === DOT && (length === 1 || target.charCodeAt(start + 1) === DOT)) return false;
      start = i + 1;
    } else if (c === QUESTION || c === HASH) {
      return false;
    }
  }
  return true;
}

/** The request path of a target: `/api//orders/?x=1` is `/api/orders`, `/a/../b` is `/b`. */
export function normalisePath(target: string): string {
  return `/${pathSegments(target).join('/')}`;
}
