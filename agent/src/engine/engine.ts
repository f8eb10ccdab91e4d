import { pathSegments } from '../../../src/agent-protocol/path-pattern.js';
import { type Rule } from '../../../src/agent-protocol/rules.js';
import { buildAnswer } from './answers.js';
import { Breaker, REJECT_OPEN } from './breaker.js';
import { DEFAULT_SLOW_MS, StatsSlots, type StatsKey, type StatsSlot } from './call-stats.js';
import { ChainCache, NONE, Resolved, type Chain } from './chains.js';
import { LimitState, type Limiter } from './limit.js';
import { compareIds, compareSpecificity, compileTarget, matches, type Matcher } from './match.js';
import {
  HTTP,
  INBOUND,
  OUTBOUND,
  type Answer,
  type Call,
  type Clock,
  type Direction,
  type EngineOptions,
  type Protocol,
  type SecondStats,
  type StatsView,
} from './types.js';
import { collectSeconds } from './stats-entries.js';

/**
 * The enforcement engine: decides each call by docs/rules.md's evaluation order, synchronously and,
 * in the steady state, without allocating. The rules matching a call key (direction, remote,
 * protocol, verb, path) are resolved once into a cached Chain (chains.ts), which also holds the
 * key's statistics (call-stats.ts). Call objects and statistics slots are pooled.
 */

const NO_SEGMENTS: readonly string[] = [];

type Compiled =
  | { kind: 'limit'; json: string; matcher: Matcher; state: LimitState }
  | { kind: 'breaker'; json: string; matcher: Matcher; breaker: Breaker }
  | { kind: 'degrade'; json: string; matcher: Matcher; force: boolean; answer: Answer };

const FREE = 0;
const WAITING = 1;
const RUNNING = 2;

class PooledCall implements Call {
  readonly kind = 'call';
  waitMs = 0;
  state = FREE;
  /** When the engine saw the call: statistics measure latency from here. */
  startedAt = 0;
  /** When the breakers admitted the call: breakers measure latency from here. */
  admittedAt = 0;
  /** The rules the call started with (an apply() during the call resolves its chain anew). */
  rules: Resolved | null = null;
  /** The statistics slot of the second the call started in. */
  slot: StatsSlot | null = null;
  /** The phase each breaker admitted the call in. */
  readonly phases: number[] = [];

  constructor(private readonly pool: CallPool) {}

  get slowMs(): number {
    return this.rules?.slowMs ?? DEFAULT_SLOW_MS;
  }

  resume(): Answer | null {
    if (this.state !== WAITING) return null;
    this.waitMs = 0;
    return admitBreakers(this, this.pool.clock.now, this.pool);
  }

  exit(error: boolean): number {
    if (this.state === RUNNING) {
      const now = this.pool.clock.now;
      const rules = this.rules!;
      const breakers = rules.breakers;
      const admitted = now - this.admittedAt;
      for (let i = 0; i < breakers.length; i++) breakers[i]!.complete(this.phases[i]!, admitted, error, now);
      releaseSlots(rules.slotLimits);
      return this.pool.complete(this, now, error);
    }
    if (this.state === WAITING) {
      releaseSlots(this.rules!.slotLimits);
      this.waitMs = 0;
      return this.pool.complete(this, this.pool.clock.now, error);
    }
    return -1;
  }
}

// The free list is a FIFO ring that keeps a reserve of POOL_RESERVE calls: a Call object is reused
// only after that many other calls, so a stray second exit() right after the first cannot land on
// the Call of a later, unrelated request.
const POOL_SIZE = 4_096; // a power of two
const POOL_RESERVE = 64;

/** Where a call started in an abandoned statistics slot is counted (call-stats.ts). */
interface SlotSource {
  currentSlot(key: StatsKey, now: number): StatsSlot;
}

class CallPool {
  private readonly ring: (PooledCall | undefined)[] = new Array<PooledCall | undefined>(POOL_SIZE).fill(undefined);
  private head = 0;
  private count = 0;

  constructor(
    readonly clock: Clock,
    private readonly slots: SlotSource,
  ) {}

  /** Counts a completed call in the slot of its start second, and releases it; returns its latency. */
  complete(call: PooledCall, now: number, error: boolean): number {
    const latency = now - call.startedAt;
    this.startSlot(call, now).complete(latency, error, call.rules!.slowMs);
    this.release(call);
    return latency;
  }

  /** Counts a call a breaker rejected (after its queue wait, if any) in the slot of its start second, and releases it. */
  broken(call: PooledCall, now: number, fallback: boolean): void {
    this.startSlot(call, now).rejectBroken(fallback);
    this.release(call);
  }

  private startSlot(call: PooledCall, now: number): StatsSlot {
    let slot = call.slot!;
    call.slot = null;
    slot.inFlight--;
    if (slot.abandoned) slot = this.slots.currentSlot(slot.key, now);
    return slot;
  }

  acquire(): PooledCall {
    if (this.count <= POOL_RESERVE) return new PooledCall(this);
    const call = this.ring[this.head]!;
    this.head = (this.head + 1) & (POOL_SIZE - 1);
    this.count--;
    return call;
  }

  release(call: PooledCall): void {
    call.state = FREE;
    if (this.count < POOL_SIZE) {
      this.ring[(this.head + this.count) & (POOL_SIZE - 1)] = call;
      this.count++;
    }
  }
}

function releaseSlots(limits: readonly Limiter[]): void {
  for (let i = 0; i < limits.length; i++) limits[i]!.release();
}

/** Step 3: every breaker in id order; the first rejection ends it and undoes the earlier admissions. */
function admitBreakers(call: PooledCall, now: number, pool: CallPool): Answer | null {
  const rules = call.rules!;
  const breakers = rules.breakers;
  const phases = call.phases;
  for (let i = 0; i < breakers.length; i++) {
    const breaker = breakers[i]!;
    const phase = breaker.admit(now);
    if (phase < 0) {
      for (let j = 0; j < i; j++) breakers[j]!.giveBack(phases[j]!);
      releaseSlots(rules.slotLimits);
      const fallback = rules.fallback;
      pool.broken(call, now, fallback !== null);
      return fallback ?? (phase === REJECT_OPEN ? breaker.openAnswer : breaker.halfOpenAnswer);
    }
    phases[i] = phase;
  }
  call.state = RUNNING;
  call.admittedAt = now;
  return null;
}

export class Engine {
  private readonly application: string;
  private readonly clock: Clock;
  private readonly onBreakerState: EngineOptions['onBreakerState'];
  private readonly pool: CallPool;

  /** Compiled enabled rules of this application by id; kept across apply() while their JSON is unchanged. */
  private compiled = new Map<string, Compiled>();
  /** The compiled rules of each direction, in id order (limits and breakers are evaluated in it). */
  private byDirection: Compiled[][] = [[], []];
  /** Bumped by apply(): a chain of an older version is resolved again on its next call. */
  private version = 0;

  private readonly chains = new ChainCache();
  private readonly slots = new StatsSlots();

  /** Added to the clock for ms since the epoch. */
  private epochOffset: number;
  /** The wall-clock second calls are counted in now, and the clock time at which it ends. */
  private second = 0;
  private secondEnd = -Infinity;

  constructor(options: EngineOptions) {
    this.application = options.application;
    this.clock = options.clock;
    this.onBreakerState = options.onBreakerState;
    this.epochOffset = options.epochOffsetMs ?? 0;
    this.pool = new CallPool(options.clock, this);
  }

  /** ms since the epoch = clock + this. */
  get epochOffsetMs(): number {
    return this.epochOffset;
  }

  /**
   * Moves the clock's mapping to the epoch (the agent corrects drift between its monotonic clock and
   * the wall clock). Seconds never go back: after a step backwards, calls count in the current
   * second until the wall clock has caught up.
   */
  setEpochOffset(ms: number): void {
    this.epochOffset = ms;
    this.secondEnd = -Infinity;
  }

  /** The wall-clock second calls are counted in at clock time `now`. */
  secondAt(now: number): number {
    return now < this.secondEnd ? this.second : this.nextSecond(now);
  }

  /** The slot a call started in an abandoned slot is counted in: its key's slot of the current second. */
  currentSlot(key: StatsKey, now: number): StatsSlot {
    return this.slots.current(key, this.secondAt(now));
  }

  private nextSecond(now: number): number {
    const second = Math.floor((now + this.epochOffset) / 1000);
    if (second > this.second) this.second = second;
    this.secondEnd = (this.second + 1) * 1000 - this.epochOffset;
    return this.second;
  }

  /**
   * Replaces the whole rule set. Rules of other applications and disabled rules never match. A rule
   * whose JSON is unchanged keeps its run-time state; a changed, new or re-enabled rule starts afresh
   * (docs/rules.md "Resets"). Calls in flight finish against the state they started with.
   */
  apply(rules: readonly Rule[]): void {
    const now = this.clock.now;
    const previous = this.compiled;
    const next = new Map<string, Compiled>();
    for (const rule of rules) {
      if (rule.application !== this.application || !rule.enabled) continue;
      const json = JSON.stringify(rule);
      const kept = previous.get(rule.id);
      if (kept !== undefined && kept.json === json) {
        next.set(rule.id, kept);
        continue;
      }
      const compiled = this.compile(rule, json, now);
      next.set(rule.id, compiled);
      // A changed breaker starts afresh in CLOSED: a transition when its old state was not CLOSED.
      if (compiled.kind === 'breaker' && kept?.kind === 'breaker' && kept.breaker.stateName !== 'CLOSED') {
        this.onBreakerState?.(rule.id, 'CLOSED', now);
      }
    }
    this.compiled = next;
    const sorted = [...next.values()].sort((a, b) => compareIds(a.matcher.id, b.matcher.id));
    this.byDirection = [
      sorted.filter((c) => c.matcher.direction === INBOUND),
      sorted.filter((c) => c.matcher.direction === OUTBOUND),
    ];
    this.version++;
  }

  /**
   * Steps 1–3 of the evaluation order for one call (docs/rules.md): an Answer to answer the call
   * with, or a Call to make (after `waitMs`, then `resume()`) and `exit()` when it completes.
   *
   * @param remote the caller (inbound) or callee (outbound) application, lower-case; for an outbound
   *   call to an unnamed callee its `host:port`; '' when unknown.
   * @param verb the HTTP method in upper case, or the Dubbo interface.
   * @param name the raw HTTP request target (normalised here), or the Dubbo method.
   */
  enter(direction: Direction, remote: string, protocol: Protocol, verb: string, name: string): Call | Answer {
    const now = this.clock.now;
    const chain =
      this.chains.get(direction, remote, protocol, verb, name) ?? this.chains.add(direction, remote, protocol, verb, name);
    const rules = chain.rules.version === this.version ? chain.rules : this.resolve(chain, now);
    const second = now < this.secondEnd ? this.second : this.nextSecond(now);
    const stats = rules.stats;
    let slot = stats.slot;
    if (slot === null || slot.second !== second) slot = this.slots.rotate(stats, second);
    if (rules.forced !== null) {
      slot.degradeForced();
      return rules.forced;
    }
    const limits = rules.limits;
    let waitMs = 0;
    for (let i = 0; i < limits.length; i++) {
      const limiter = limits[i]!;
      const wait = limiter.acquire(now);
      if (wait < 0) {
        for (let j = 0; j < i; j++) limits[j]!.release();
        const fallback = rules.fallback;
        slot.rejectLimited(fallback !== null);
        return fallback ?? limiter.answer;
      }
      if (wait > waitMs) waitMs = wait;
    }
    const call = this.pool.acquire();
    call.rules = rules;
    call.slot = slot;
    call.startedAt = now;
    slot.inFlight++;
    if (waitMs > 0) {
      call.state = WAITING;
      call.waitMs = waitMs;
      return call;
    }
    return admitBreakers(call, now, this.pool) ?? call;
  }

  /**
   * Visits the statistics of every key and second before `before` (all seconds by default) with
   * calls counted since the last drain, then resets them. The view is live: copy what is needed
   * before returning. Calls still in flight are counted in their start second when they complete,
   * so a later drain can visit an earlier second again.
   */
  drainStats(visit: (entry: StatsView) => void, before = Infinity): void {
    this.drainSlots(visit, before);
  }

  /**
   * The statistics of every second that has ended (before the current one, by default) as stats
   * frame entries, merged by (direction, peer, protocol, resource), in ascending seconds; seconds
   * without calls are left out. Allocates: called once a second.
   */
  drainSeconds(before = this.secondAt(this.clock.now)): SecondStats[] {
    return collectSeconds((visit) => this.drainSlots(visit, before));
  }

  private drainSlots(visit: (slot: StatsSlot) => void, before: number): void {
    this.chains.drain(this.slots, before, visit);
    this.slots.drainParked(before, this.secondAt(this.clock.now), visit);
  }

  /** Sizes of the bounded caches, for the agent's own metrics and for tests. */
  cacheSizes(): { chains: number; callers: number; parkedStats: number } {
    let callers = 0;
    for (const compiled of this.compiled.values()) if (compiled.kind === 'limit') callers += compiled.state.callers;
    return { chains: this.chains.size, callers, parkedStats: this.slots.parkedCount };
  }

  private compile(rule: Rule, json: string, now: number): Compiled {
    const matcher = compileTarget(rule.id, rule.target);
    switch (rule.kind) {
      case 'limit': {
        const answer = buildAnswer('limited', rule.id, rule.rejection.http, rule.rejection.rpc.message, undefined);
        return { kind: 'limit', json, matcher, state: new LimitState(rule.limit, answer, now) };
      }
      case 'breaker': {
        const { http, rpc } = rule.rejection;
        const open = buildAnswer('breaker-open', rule.id, http, rpc.message, undefined);
        const halfOpen = buildAnswer('breaker-half-open', rule.id, http, rpc.message, undefined);
        return {
          kind: 'breaker',
          json,
          matcher,
          breaker: new Breaker(rule.id, rule.breaker, open, halfOpen, this.onBreakerState, now),
        };
      }
      case 'degrade': {
        const reason = rule.force ? 'degraded-forced' : 'fallback';
        const answer = buildAnswer(reason, rule.id, rule.fallback.http, undefined, rule.fallback.rpc.value);
        return { kind: 'degrade', json, matcher, force: rule.force, answer };
      }
    }
  }

  /** Finds the rules a chain's key matches: limits and breakers in id order, the most specific degrade rules. */
  private resolve(chain: Chain, now: number): Resolved {
    const { direction, remote, protocol, verb, name } = chain;
    const segments = protocol === HTTP ? pathSegments(name) : NO_SEGMENTS;
    const limits: Limiter[] = [];
    const breakers: Breaker[] = [];
    let forced: Compiled | undefined;
    let fallback: Compiled | undefined;
    for (const compiled of this.byDirection[direction]!) {
      if (!matches(compiled.matcher, remote, protocol, verb, name, segments)) continue;
      if (compiled.kind === 'limit') limits.push(compiled.state.limiterFor(remote, now));
      else if (compiled.kind === 'breaker') breakers.push(compiled.breaker);
      else if (compiled.force) forced = mostSpecific(forced, compiled);
      else fallback = mostSpecific(fallback, compiled);
    }
    const slotLimits = limits.filter((limit) => limit.concurrency);
    let slowMs = -1;
    for (const breaker of breakers) slowMs = Math.max(slowMs, breaker.slowCallMs);
    return (chain.rules = new Resolved(
      this.version,
      chain.stats,
      slowMs >= 0 ? slowMs : DEFAULT_SLOW_MS,
      forced?.kind === 'degrade' ? forced.answer : null,
      fallback?.kind === 'degrade' ? fallback.answer : null,
      limits.length > 0 ? limits : NONE,
      slotLimits.length > 0 ? slotLimits : NONE,
      breakers.length > 0 ? breakers : NONE,
    ));
  }
}

function mostSpecific(best: Compiled | undefined, candidate: Compiled): Compiled {
  return best === undefined || compareSpecificity(candidate.matcher, best.matcher) < 0 ? candidate : best;
}
