import { type Breaker } from './breaker.js';
import { DEFAULT_SLOW_MS, StatsKey, type StatsSlot, type StatsSlots } from './call-stats.js';
import { type Limiter } from './limit.js';
import { isNormalPath, normalisePath } from './match.js';
import { DUBBO, HTTP, INBOUND, OUTBOUND, type Answer, type Direction, type Protocol } from './types.js';

/** Cache entries at most (chains, and aliases of raw targets); further keys share overflow statistics. */
export const MAX_CHAINS = 10_000;
/** Longer keys are never cached: a hostile 8 KB URL must not pin 8 KB per cache entry. */
const MAX_KEY_CHARS = 2_048;

export const NONE: readonly never[] = [];

/**
 * What a chain's key resolved to under one rule set. Replaced, never changed, when the rules change,
 * so a call keeps the rules it started with.
 */
export class Resolved {
  constructor(
    /** The engine's rule-set version this was resolved under (-1: not yet). */
    readonly version: number,
    readonly stats: StatsKey,
    /** A completed call is slow above this: the largest `slowCallMs` of the slow-call breakers matching, else 1,000 ms. */
    readonly slowMs: number = DEFAULT_SLOW_MS,
    readonly forced: Answer | null = null,
    readonly fallback: Answer | null = null,
    /** Limits in id order. */
    readonly limits: readonly Limiter[] = NONE,
    /** The concurrency limits among them: the slots a completed call gives back. */
    readonly slotLimits: readonly Limiter[] = NONE,
    /** Breakers in id order. */
    readonly breakers: readonly Breaker[] = NONE,
  ) {}
}

/**
 * One call key (direction, remote, protocol, verb, name) and its statistics; the engine resolves its
 * rules again, lazily, after every apply().
 */
export class Chain {
  rules: Resolved;

  constructor(
    readonly direction: Direction,
    readonly remote: string,
    readonly protocol: Protocol,
    readonly verb: string,
    /** Normalised HTTP path, or Dubbo method. */
    readonly name: string,
    readonly stats: StatsKey,
  ) {
    this.rules = new Resolved(-1, stats);
  }
}

/** The chains of one name: nearly always one, checked directly; with several, also by remote and verb. */
class NameEntry {
  variants: Map<string, Map<string, Chain>> | null = null;

  /** The chain of the name's last call (or its only one). */
  constructor(public hot: Chain) {}

  chains(): Chain[] {
    if (this.variants === null) return [this.hot];
    const out: Chain[] = [];
    for (const byVerb of this.variants.values()) out.push(...byVerb.values());
    return out;
  }
}

/** Slots of the front cache, a power of two. */
const FRONT_SLOTS = 4_096;

/**
 * The front cache's slot of a key: a few characters of the name and the lengths, read without
 * hashing the whole string (V8 hashes a new string in full before a Map lookup, which costs more
 * than the rest of a decision).
 */
function frontSlot(space: number, remote: string, verb: string, name: string): number {
  const n = name.length;
  if (n < 2) return space;
  const h =
    (n << 2) ^
    (name.charCodeAt(n - 1) << 5) ^
    (name.charCodeAt(n - 2) << 9) ^
    (name.charCodeAt(n >> 1) << 13) ^
    (name.charCodeAt(1) << 17) ^
    (remote.length << 21) ^
    (verb.length << 25) ^
    space;
  return (h ^ (h >>> 12)) & (FRONT_SLOTS - 1);
}

/**
 * Chains by the name a call arrives with, keyed by the raw HTTP request target so the path is
 * normalised only on a miss; a raw target that is not a normalised path (a query string, `//`, dot
 * segments) is an alias of its path's chain. In front of the Maps, a direct-mapped cache of the
 * chains hit recently is checked with string comparisons only.
 */
export class ChainCache {
  private readonly frontNames: (string | null)[] = new Array<string | null>(FRONT_SLOTS).fill(null);
  private readonly frontChains: (Chain | null)[] = new Array<Chain | null>(FRONT_SLOTS).fill(null);
  /** By direction × 2 + protocol, then name. */
  private readonly names: Map<string, NameEntry>[] = [0, 1, 2, 3].map(() => new Map<string, NameEntry>());
  private entries = 0;
  private readonly overflow: StatsKey[] = [
    new StatsKey(INBOUND, '', HTTP, '', '', true),
    new StatsKey(INBOUND, '', DUBBO, '', '', true),
    new StatsKey(OUTBOUND, '', HTTP, '', '', true),
    new StatsKey(OUTBOUND, '', DUBBO, '', '', true),
  ];

  get size(): number {
    return this.entries;
  }

  /** The cached chain of a call key, or undefined. */
  get(direction: Direction, remote: string, protocol: Protocol, verb: string, name: string): Chain | undefined {
    const space = direction * 2 + protocol;
    const slot = frontSlot(space, remote, verb, name);
    const front = this.frontChains[slot]!;
    if (
      front !== null &&
      this.frontNames[slot] === name &&
      front.remote === remote &&
      front.verb === verb &&
      front.direction === direction &&
      front.protocol === protocol
    ) {
      return front;
    }
    return this.behindFront(space, slot, remote, verb, name);
  }

  private behindFront(space: number, slot: number, remote: string, verb: string, name: string): Chain | undefined {
    const chain = this.find(space, remote, verb, name);
    if (chain !== undefined) {
      this.frontNames[slot] = name;
      this.frontChains[slot] = chain;
    }
    return chain;
  }

  private find(space: number, remote: string, verb: string, name: string): Chain | undefined {
    const entry = this.names[space]!.get(name);
    if (entry === undefined) return undefined;
    const hot = entry.hot;
    if (hot.remote === remote && hot.verb === verb) return hot;
    const chain = entry.variants?.get(remote)?.get(verb);
    if (chain !== undefined) entry.hot = chain;
    return chain;
  }

  /**
   * The chain of a key `get` did not find, cached when there is room; otherwise a chain of its own
   * (resolved on every call) counting into the shared overflow statistics.
   */
  add(direction: Direction, remote: string, protocol: Protocol, verb: string, target: string): Chain {
    const space = direction * 2 + protocol;
    const name = protocol === HTTP && !isNormalPath(target) ? normalisePath(target) : target;
    if (this.entries >= MAX_CHAINS || remote.length + verb.length + name.length > MAX_KEY_CHARS) {
      return new Chain(direction, remote, protocol, verb, name, this.overflow[space]!);
    }
    let chain = name === target ? undefined : this.find(space, remote, verb, name);
    if (chain === undefined) {
      chain = new Chain(direction, remote, protocol, verb, name, new StatsKey(direction, remote, protocol, verb, name));
      this.insert(space, name, chain);
    }
    // A target too long to keep is normalised again on each call, but still counts under its path.
    if (name !== target && this.entries < MAX_CHAINS && target.length <= MAX_KEY_CHARS) this.insert(space, target, chain);
    return chain;
  }

  /**
   * Visits every key's statistics of a second before `before` (see StatsSlots.drainKey), then resets
   * them. When the cache is full, aliases and keys without calls since the last drain are evicted,
   * so a burst of one-off keys does not pin it.
   */
  drain(slots: StatsSlots, before: number, visit: (slot: StatsSlot) => void): void {
    const evict = this.entries >= MAX_CHAINS;
    if (evict) {
      this.frontNames.fill(null);
      this.frontChains.fill(null);
    }
    for (const names of this.names) {
      for (const [key, entry] of names) {
        for (const chain of entry.chains()) {
          const alias = chain.name !== key;
          const active = !alias && slots.drainKey(chain.stats, before, visit);
          if (evict && !active) {
            if (!alias) slots.forget(chain.stats);
            this.remove(names, key, entry, chain);
          }
        }
      }
    }
    for (const key of this.overflow) slots.drainKey(key, before, visit);
  }

  private insert(space: number, key: string, chain: Chain): void {
    const names = this.names[space]!;
    const entry = names.get(key);
    this.entries++;
    if (entry === undefined) {
      names.set(key, new NameEntry(chain));
      return;
    }
    if (entry.variants === null) {
      entry.variants = new Map();
      addVariant(entry.variants, entry.hot);
    }
    addVariant(entry.variants, chain);
    entry.hot = chain;
  }

  private remove(names: Map<string, NameEntry>, key: string, entry: NameEntry, chain: Chain): void {
    this.entries--;
    const variants = entry.variants;
    const byVerb = variants?.get(chain.remote);
    byVerb?.delete(chain.verb);
    if (byVerb?.size === 0) variants?.delete(chain.remote);
    const rest = entry.chains();
    if (variants === null || rest.length === 0) names.delete(key);
    else if (entry.hot === chain) entry.hot = rest[0]!;
  }
}

function addVariant(variants: Map<string, Map<string, Chain>>, chain: Chain): void {
  let byVerb = variants.get(chain.remote);
  if (byVerb === undefined) variants.set(chain.remote, (byVerb = new Map<string, Chain>()));
  byVerb.set(chain.verb, chain);
}
