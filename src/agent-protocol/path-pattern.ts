/**
 * HTTP path patterns for rule targets. Patterns are a small glob, never a regular expression: an
 * operator's pattern runs in every agent on every call, so matching must stay linear in the length
 * of the path whatever was written, and two agents in different languages must agree on every
 * match. Whole-segment wildcards only, and `**` only at the end, keep matching a single left-to-
 * right walk and make "does pattern A cover pattern B" exactly decidable.
 *
 * Syntax (docs/rules.md, "HTTP path patterns"):
 * - starts with `/`; segments separated by `/`; no empty segments, no trailing `/` (except `/`);
 * - a literal segment: letters, digits, `-._~!&',;=:@` and `%XX` escapes; not `.` or `..`;
 * - `*` one whole non-empty segment; `{name}` the same, named for readability;
 * - `**` as the last segment: zero or more further segments.
 */

export const PATH_PATTERN_MAX_LENGTH = 512;
export const PATH_PATTERN_MAX_SEGMENTS = 32;

export type PatternSegment = { type: 'literal'; value: string } | { type: 'one' };

export interface PathPattern {
  /** The segments before an optional trailing `**`. */
  segments: PatternSegment[];
  /** Whether the pattern ends with `**` (matches zero or more further segments). */
  tail: boolean;
  /** The pattern with every `{name}` written `*`: patterns with one canonical form match the same paths. */
  canonical: string;
}

export type CompileResult = { ok: true; pattern: PathPattern } | { ok: false; error: string };

// RFC 3986 path characters (pchar) without `*`, `$`, `(`, `)` and `+`: a pattern that looks like a
// regular expression is refused with a hint rather than silently matched as literal text.
const LITERAL_CHARS = new Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!&',;=:@");
const REGEX_CHARS = new Set('$()+?[]\\^|');
const HEX = new Set('0123456789abcdefABCDEF');

function literalError(segment: string): string | undefined {
  if (segment === '.' || segment === '..') return `segment "${segment}" is a dot segment; write the path without it`;
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charAt(i);
    if (c === '%') {
      if (!HEX.has(segment.charAt(i + 1)) || !HEX.has(segment.charAt(i + 2))) {
        return `segment "${segment}" has a "%" not followed by two hex digits`;
      }
      i += 2;
    } else if (c === '*' || c === '{' || c === '}') {
      return `segment "${segment}" mixes a wildcard with text; "*", "{name}" and "**" must be whole segments`;
    } else if (REGEX_CHARS.has(c)) {
      return (
        `segment "${segment}" has ${JSON.stringify(c)}: patterns are globs, not regular expressions ` +
        '(use "*", "{name}" or "**"; percent-encode the character if the path really has it)'
      );
    } else if (!LITERAL_CHARS.has(c)) {
      return `segment "${segment}" has the character ${JSON.stringify(c)}, not allowed in a URL path (percent-encode it)`;
    }
  }
  return undefined;
}

const SEGMENT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;

/** Parses a pattern; the error names the first problem and what is allowed instead. */
export function compilePathPattern(source: string): CompileResult {
  const fail = (error: string): CompileResult => ({ ok: false, error });
  if (source.length === 0) return fail('must not be empty; write a path starting with "/"');
  if (source.length > PATH_PATTERN_MAX_LENGTH) return fail(`must be at most ${PATH_PATTERN_MAX_LENGTH} characters`);
  if (source.charAt(0) !== '/') return fail('must start with "/"');
  if (source === '/') return { ok: true, pattern: { segments: [], tail: false, canonical: '/' } };
  const parts = source.slice(1).split('/');
  if (parts.length > PATH_PATTERN_MAX_SEGMENTS) return fail(`must have at most ${PATH_PATTERN_MAX_SEGMENTS} segments`);
  const segments: PatternSegment[] = [];
  const names = new Set<string>();
  let tail = false;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? '';
    if (part === '') return fail('must not contain an empty segment ("//") or end with "/"');
    if (part === '**') {
      if (i !== parts.length - 1) return fail('"**" is allowed only as the last segment');
      tail = true;
    } else if (part === '*') {
      segments.push({ type: 'one' });
    } else if (part.startsWith('{') && part.endsWith('}')) {
      const name = part.slice(1, -1);
      if (!SEGMENT_NAME.test(name))
        return fail(`"${part}": a segment name is a letter or "_" then letters, digits or "_", at most 32`);
      if (names.has(name)) return fail(`"${part}": the segment name "${name}" is used twice`);
      names.add(name);
      segments.push({ type: 'one' });
    } else {
      const error = literalError(part);
      if (error) return fail(error);
      segments.push({ type: 'literal', value: part });
    }
  }
  const written = segments.map((s) => (s.type === 'literal' ? s.value : '*'));
  if (tail) written.push('**');
  return { ok: true, pattern: { segments, tail, canonical: `/${written.join('/')}` } };
}

/**
 * The segments of a request path as patterns see them: the query and fragment removed, empty and
 * `.` segments dropped, `..` removing the segment before it (RFC 3986 dot-segment removal). No
 * percent-decoding: `%2F` stays inside its segment, and literals compare byte for byte.
 */
export function pathSegments(path: string): string[] {
  let end = path.length;
  const query = path.indexOf('?');
  if (query !== -1) end = query;
  const fragment = path.indexOf('#');
  if (fragment !== -1 && fragment < end) end = fragment;
  const out: string[] = [];
  for (const part of path.slice(0, end).split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out;
}

/** Whether a request path matches the pattern; one pass over the path's segments. */
export function matchPath(pattern: PathPattern, path: string): boolean {
  return matchSegments(pattern, pathSegments(path));
}

/** As matchPath, for a path already split once with pathSegments (an agent tries many patterns). */
export function matchSegments(pattern: PathPattern, segments: readonly string[]): boolean {
  const fixed = pattern.segments.length;
  if (pattern.tail ? segments.length < fixed : segments.length !== fixed) return false;
  for (let i = 0; i < fixed; i++) {
    const want = pattern.segments[i];
    if (want?.type === 'literal' && want.value !== segments[i]) return false;
  }
  return true;
}

/** Whether every single segment `b` matches also matches `a`. */
function segmentCovers(a: PatternSegment, b: PatternSegment): boolean {
  return a.type === 'one' || (b.type === 'literal' && a.value === b.value);
}

/** Whether some single segment matches both. */
function segmentsMeet(a: PatternSegment, b: PatternSegment): boolean {
  return a.type === 'one' || b.type === 'one' || a.value === b.value;
}

/**
 * Whether every path matching `b` also matches `a` (exact: a pattern is a fixed sequence of
 * segment sets, optionally followed by "anything").
 */
export function patternCovers(a: PathPattern, b: PathPattern): boolean {
  const fixed = a.segments.length;
  if (a.tail ? b.segments.length < fixed : b.tail || b.segments.length !== fixed) return false;
  for (let i = 0; i < fixed; i++) {
    const sa = a.segments[i];
    const sb = b.segments[i];
    if (!sa || !sb || !segmentCovers(sa, sb)) return false;
  }
  return true;
}

/** Whether at least one path matches both patterns. */
export function patternsIntersect(a: PathPattern, b: PathPattern): boolean {
  const la = a.segments.length;
  const lb = b.segments.length;
  // The possible path lengths must meet: exactly la (or la and more), exactly lb (or lb and more).
  if (!a.tail && !b.tail && la !== lb) return false;
  if (a.tail && !b.tail && lb < la) return false;
  if (b.tail && !a.tail && la < lb) return false;
  const common = Math.min(la, lb);
  for (let i = 0; i < common; i++) {
    const sa = a.segments[i];
    const sb = b.segments[i];
    if (!sa || !sb || !segmentsMeet(sa, sb)) return false;
  }
  return true;
}

/** For patterns that were validated already (stored rules); an invalid one here is a programming error. */
export function compileValidPattern(source: string): PathPattern {
  const compiled = compilePathPattern(source);
  if (!compiled.ok) throw new Error(`invalid path pattern ${JSON.stringify(source)}: ${compiled.error}`);
  return compiled.pattern;
}
