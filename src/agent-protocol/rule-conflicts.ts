import { compileValidPattern, patternCovers, patternsIntersect, type PathPattern, type PatternSegment } from './path-pattern.js';
import { ruleTargetKey, type Rule } from './rules.js';

/**
 * Overlapping and contradictory rules, reported (never refused: a global limit plus tighter
 * per-method limits is a legitimate design, but the operator should see that both apply). Only
 * enabled rules are compared. Everything here is decided exactly, not heuristically:
 *
 * - duplicate: enabled rules of one class on the identical target (same ruleTargetKey). Classes:
 *   limit by mode and perCaller, breaker by strategy, every degrade rule one class.
 * - overlap: enabled rules of one class whose targets share calls without being identical; the
 *   ids are [wider, narrower] when one target covers the other, else sorted.
 * - contradiction: an enabled forced degrade whose target covers a limit's, a breaker's or a
 *   non-forced degrade's: the forced degrade answers every call that rule would see, so that rule
 *   can never act. (Reported as this, not also as an overlap.)
 *
 * A target is encoded as a path pattern (application / direction / caller-or-callee / resource
 * parts), so covering and intersecting are the exact pattern relations of path-pattern.ts, and a
 * trie finds the rules that share calls with a rule without comparing every pair.
 */

export type ConflictKind = 'duplicate' | 'overlap' | 'contradiction';

export interface Conflict {
  kind: ConflictKind;
  /** Sorted for duplicates and partial overlaps; [wider, narrower] for a covering overlap; [forced, silenced] for a contradiction. */
  ruleIds: string[];
  message: string;
}

interface Entry {
  rule: Rule;
  key: string;
  pattern: PathPattern;
  /** Rules compare only within a class: kinds (and limit modes, breaker strategies) that compose. */
  klass: string;
}

const literal = (value: string): PatternSegment => ({ type: 'literal', value });

// A stored rule object never changes, and a server checks the same thousands of rules on every
// write: their keys and compiled patterns are computed once per object.
const compiled = new WeakMap<Rule, Entry>();
function entryOf(rule: Rule): Entry {
  let entry = compiled.get(rule);
  if (!entry) {
    const key = ruleTargetKey(rule);
    entry = { rule, key, pattern: targetPattern(rule, key), klass: klassOf(rule) };
    compiled.set(rule, entry);
  }
  return entry;
}
const ANY: PatternSegment = { type: 'one' };

function targetPattern(rule: Rule, key: string): PathPattern {
  const { target } = rule;
  const segments: PatternSegment[] = [literal(rule.application), literal(target.direction)];
  segments.push(
    target.direction === 'inbound' ? (target.caller === undefined ? ANY : literal(target.caller)) : literal(target.callee),
  );
  const resource = target.resource;
  let tail = false;
  switch (resource.type) {
    case 'application':
      tail = true;
      break;
    case 'dubbo':
      segments.push(literal('dubbo'), literal(resource.interface));
      if (resource.method === undefined) tail = true;
      else segments.push(literal(resource.method));
      break;
    case 'http': {
      const path = compileValidPattern(resource.path);
      segments.push(literal('http'), resource.method === undefined ? ANY : literal(resource.method), ...path.segments);
      tail = path.tail;
      break;
    }
  }
  return { segments, tail, canonical: key };
}

function klassOf(rule: Rule): string {
  switch (rule.kind) {
    case 'limit':
      return `limit|${rule.limit.mode}|${rule.limit.perCaller ? 'per-caller' : 'shared'}`;
    case 'breaker':
      return `breaker|${rule.breaker.strategy}`;
    case 'degrade':
      return 'degrade';
  }
}

function describe(entry: Entry): string {
  const { rule } = entry;
  switch (rule.kind) {
    case 'limit':
      return `${rule.limit.mode}${rule.limit.perCaller ? ' per-caller' : ''} limit`;
    case 'breaker':
      return `${rule.breaker.strategy} breaker`;
    case 'degrade':
      return rule.force ? 'forced degrade' : 'degrade';
  }
}

interface TrieNode {
  literal: Map<string, TrieNode>;
  one: TrieNode | undefined;
  /** Patterns ending at this depth. */
  ends: Entry[];
  /** Patterns with `**` after this depth's segments. */
  tails: Entry[];
}

const newNode = (): TrieNode => ({ literal: new Map(), one: undefined, ends: [], tails: [] });

/** Finds the entries whose patterns share a path with a given one. */
interface PatternIndex {
  add(entry: Entry): void;
  intersecting(pattern: PathPattern): Entry[];
}

/**
 * For a few questions over many rules (one write checked against thousands), building a trie
 * costs more than asking each rule: the linear index only collects them.
 */
class LinearIndex implements PatternIndex {
  private readonly all: Entry[] = [];
  add(entry: Entry): void {
    this.all.push(entry);
  }
  intersecting(pattern: PathPattern): Entry[] {
    return this.all.filter((entry) => patternsIntersect(pattern, entry.pattern));
  }
}

class PatternTrie implements PatternIndex {
  private readonly root = newNode();

  add(entry: Entry): void {
    let node = this.root;
    for (const segment of entry.pattern.segments) {
      if (segment.type === 'one') {
        node.one ??= newNode();
        node = node.one;
      } else {
        let next = node.literal.get(segment.value);
        if (!next) node.literal.set(segment.value, (next = newNode()));
        node = next;
      }
    }
    (entry.pattern.tail ? node.tails : node.ends).push(entry);
  }

  /** Every entry whose pattern shares at least one path with `pattern` (patternsIntersect, indexed). */
  intersecting(pattern: PathPattern): Entry[] {
    const out: Entry[] = [];
    const visit = (node: TrieNode, depth: number): void => {
      // A `**` after `depth` compatible segments matches whatever the rest of `pattern` is.
      out.push(...node.tails);
      if (depth === pattern.segments.length) {
        if (pattern.tail) this.collectBelow(node, out);
        else out.push(...node.ends);
        return;
      }
      const segment = pattern.segments[depth];
      if (segment?.type === 'literal') {
        const next = node.literal.get(segment.value);
        if (next) visit(next, depth + 1);
      } else {
        for (const next of node.literal.values()) visit(next, depth + 1);
      }
      if (node.one) visit(node.one, depth + 1);
    };
    visit(this.root, 0);
    return out;
  }

  /** Everything strictly below `node` plus its own exact ends (its tails are collected already). */
  private collectBelow(node: TrieNode, out: Entry[]): void {
    out.push(...node.ends);
    const stack = [...node.literal.values(), ...(node.one ? [node.one] : [])];
    for (let next = stack.pop(); next; next = stack.pop()) {
      out.push(...next.ends, ...next.tails);
      stack.push(...next.literal.values());
      if (next.one) stack.push(next.one);
    }
  }
}

const KIND_ORDER: Record<ConflictKind, number> = { contradiction: 0, duplicate: 1, overlap: 2 };

const isForced = (entry: Entry) => entry.rule.kind === 'degrade' && entry.rule.force;

function overlapMessage(wider: Entry, narrower: Entry, covers: boolean): string {
  const pair = covers
    ? `${describe(wider)} rule ${wider.rule.id} (${wider.key}) covers ${describe(narrower)} rule ${narrower.rule.id} (${narrower.key})`
    : `${describe(wider)} rule ${wider.rule.id} (${wider.key}) and ${describe(narrower)} rule ${narrower.rule.id} (${narrower.key}) share some calls`;
  switch (wider.rule.kind) {
    case 'limit':
      return `${pair}: a call to both must pass both limits`;
    case 'breaker':
      return `${pair}: both breakers count those calls and either can reject them`;
    case 'degrade':
      if (isForced(wider) !== isForced(narrower)) return `${pair}: those calls get the forced rule's fallback`;
      return covers
        ? `${pair}: those calls get the fallback of the narrower rule ${narrower.rule.id}`
        : `${pair}: those calls get the fallback of the more specific target (docs/rules.md, precedence)`;
  }
}

function duplicateMessage(entries: Entry[]): string {
  const [first] = entries;
  if (!first) return '';
  const ids = entries.map((e) => e.rule.id).join(', ');
  const what = `${entries.length} enabled ${describe(first)} rules on the same target ${first.key} (${ids})`;
  switch (first.rule.kind) {
    case 'limit':
      return `${what}: every call must pass all of them, so only the strictest takes effect; keep one`;
    case 'breaker':
      return `${what}: they count the same calls and trip independently; keep one`;
    case 'degrade':
      return `${what}: only one answers (a forced one first, then the lowest id); keep one`;
  }
}

/** Every conflict among the rules, in a deterministic order: contradictions, duplicates, overlaps, each by ids. */
/**
 * The conflicts among `rules`. With `involving`, only those that involve one of these rule ids:
 * the same answer filtered, found in time proportional to those rules, not to all of them (a
 * write checks its own rule against thousands).
 */
export function findConflicts(rules: readonly Rule[], involving?: ReadonlySet<string>): Conflict[] {
  const entries: Entry[] = rules.filter((rule) => rule.enabled).map(entryOf);
  const conflicts: Conflict[] = [];

  const newIndex = (): PatternIndex => (involving && involving.size <= 64 ? new LinearIndex() : new PatternTrie());
  const byKlassAndKey = new Map<string, Entry[]>();
  const tries = new Map<string, PatternIndex>();
  // Rules a forced degrade can silence: everything but another forced degrade.
  const silenceable = newIndex();
  for (const entry of entries) {
    const same = `${entry.klass}\u0000${entry.key}`;
    const group = byKlassAndKey.get(same);
    if (group) group.push(entry);
    else byKlassAndKey.set(same, [entry]);
    let trie = tries.get(entry.klass);
    if (!trie) tries.set(entry.klass, (trie = newIndex()));
    trie.add(entry);
    if (!isForced(entry)) silenceable.add(entry);
  }

  const concerns = (ids: readonly string[]) => !involving || ids.some((id) => involving.has(id));
  for (const group of byKlassAndKey.values()) {
    if (group.length < 2 || !concerns(group.map((e) => e.rule.id))) continue;
    const sorted = [...group].sort((a, b) => compareIds(a.rule.id, b.rule.id));
    conflicts.push({ kind: 'duplicate', ruleIds: sorted.map((e) => e.rule.id), message: duplicateMessage(sorted) });
  }

  for (const entry of involving ? entries.filter((e) => involving.has(e.rule.id)) : entries) {
    for (const other of tries.get(entry.klass)?.intersecting(entry.pattern) ?? []) {
      // Each unordered pair once; identical targets are duplicates, reported above.
      const otherVisits = !involving || involving.has(other.rule.id);
      if (other.key === entry.key || (otherVisits && compareIds(entry.rule.id, other.rule.id) >= 0)) continue;
      const covers = patternCovers(entry.pattern, other.pattern);
      const covered = patternCovers(other.pattern, entry.pattern);
      // A forced degrade covering a non-forced one is a contradiction, reported below.
      if ((covers && isForced(entry) && !isForced(other)) || (covered && isForced(other) && !isForced(entry))) continue;
      if (covers) {
        conflicts.push({ kind: 'overlap', ruleIds: [entry.rule.id, other.rule.id], message: overlapMessage(entry, other, true) });
      } else if (covered) {
        conflicts.push({ kind: 'overlap', ruleIds: [other.rule.id, entry.rule.id], message: overlapMessage(other, entry, true) });
      } else if (patternsIntersect(entry.pattern, other.pattern)) {
        const [first, second] = compareIds(entry.rule.id, other.rule.id) < 0 ? [entry, other] : [other, entry];
        conflicts.push({
          kind: 'overlap',
          ruleIds: [first.rule.id, second.rule.id],
          message: overlapMessage(first, second, false),
        });
      }
    }
  }

  for (const forced of entries) {
    if (!isForced(forced)) continue;
    for (const shadowed of silenceable.intersecting(forced.pattern)) {
      // A non-forced degrade on the identical target is reported as a duplicate already.
      if (!patternCovers(forced.pattern, shadowed.pattern) || (shadowed.key === forced.key && shadowed.rule.kind === 'degrade'))
        continue;
      if (!concerns([forced.rule.id, shadowed.rule.id])) continue;
      conflicts.push({
        kind: 'contradiction',
        ruleIds: [forced.rule.id, shadowed.rule.id],
        message:
          `forced degrade rule ${forced.rule.id} (${forced.key}) answers every call of ${describe(shadowed)} rule ` +
          `${shadowed.rule.id} (${shadowed.key}) with its fallback: that rule never acts while the degrade is forced`,
      });
    }
  }

  return conflicts.sort(
    (a, b) =>
      KIND_ORDER[a.kind] - KIND_ORDER[b.kind] ||
      compareIds(a.ruleIds.join(','), b.ruleIds.join(',')) ||
      compareIds(a.message, b.message),
  );
}

/** Code-unit order, not locale order: the same in every runtime and language. */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
