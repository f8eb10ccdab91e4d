import { pathSegments } from '../../../src/agent-protocol/path-pattern.js';
import { type Rule } from '../../../src/agent-protocol/rules.js';
import { buildAnswer } from './answers.js';
import { Breaker, REJECT_OPEN } from './breaker.js';
import { type StatsSlot } from './call-stats.js';
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
  type StatsView,
} from './types.js';

/**
 * The enforcement engine: decides each call by docs/rules.md's evaluation order, synchronously and,
 * in the steady state, without allocating. The rules matching a call key (direction, remote,
 * protocol, verb, path) are resolved once into a cached Chain (chains.ts), which also holds the
 * key's statistics. Call objects are pooled.
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
  /** When the breakers admitted the call: latency is measured from here. */
  admittedAt = 0;
  /** The rules the call started with (an apply() during the call resolves its chain anew). */
  rules: Resolved | null = null;
  /** The phase each breaker admitted the call in. */
  readonly phases: number[] = [];

  constructor(private readonly pool: CallPool) {}

  resume(): Answer | null {
    if (this.state !== WAITING) return null;
    this.waitMs = 0;
    return admitBreakers(this, this.pool.clock.now, this.pool);
  }

  exit(error: boolean): void {
    if (this.state === RUNNING) {
      const now = this.pool.clock.now;
      const latency = now - this.admittedAt;
      const rules = this.rules!;
      const breakers = rules.breakers;
      for (let i = 0; i < breakers.length; i++) breakers[i]!.complete(this.phases[i]!, latency, error, now);
      releaseSlots(rules.slotLimits);
      rules.slot.recordCompletion(latency, error);
      this.pool.release(this);
    } else if (this.state === WAITING) {
      releaseSlots(this.rules!.slotLimits);
      this.waitMs = 0;
      this.pool.release(this);
    }
  }
}

// The free list is a FIFO ring that keeps a reserve of POOL_RESERVE calls: a Call object is reused
// only after that many other calls, so a stray second exit() right after the first cannot land on
// the Call of a later, unrelated request.
const POOL_SIZE = 4_096; // a power of two
const POOL_RESERVE = 64;

class CallPool {
  private readonly ring: (PooledCall | undefined)[] = new Array<PooledCall | undefined>(POOL_SIZE).fill(undefined);
  private head = 0;
  private count = 0;

  constructor(readonly clock: Clock) {}

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

/** The answer of a rejected call: the most specific fallback if any (counted as such), else the rule's. */
function rejectedWith(slot: StatsSlot, fallback: Answer | null, rejection: Answer): Answer {
  if (fallback === null) return rejection;
  slot.fallback++;
  return fallback;
}

/** Step 3: every breaker in id order; the first rejection ends it and undoes the earlier admissions. */
function admitBreakers(call: PooledCall, now: number, pool: CallPool): Answer | null {
  const rules = call.rules!;
  const breakers = rules.breakers;
  const phases = call.phases;
  const slot = rules.slot;
  for (let i = 0; i < breakers.length; i++) {
    const breaker = breakers[i]!;
    const phase = breaker.admit(now);
    if (phase < 0) {
      for (let j = 0; j < i; j++) breakers[j]!.giveBack(phases[j]!);
      releaseSlots(rules.slotLimits);
      const fallback = rules.fallback;
      pool.release(call);
      if (phase === REJECT_OPEN) {
        slot.breakerOpen++;
        return rejectedWith(slot, fallback, breaker.openAnswer);
      }
      slot.breakerHalfOpen++;
      return rejectedWith(slot, fallback, breaker.halfOpenAnswer);
    }
    phases[i] = phase;
  }
  call.state = RUNNING;
  call.admittedAt = now;
  slot.passed++;
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

  constructor(options: EngineOptions) {
    this.application = options.application;
    this.clock = options.clock;
    this.onBreakerState = options.onBreakerState;
    this.pool = new CallPool(options.clock);
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
   * @param remote the caller (inbound) or callee (outbound) application, lower-case; '' when unknown.
   * @param verb the HTTP method in upper case, or the Dubbo interface.
   * @param name the raw HTTP request target (normalised here), or the Dubbo method.
   */
  enter(direction: Direction, remote: string, protocol: Protocol, verb: string, name: string): Call | Answer {
    const now = this.clock.now;
    const chain =
      this.chains.get(direction, remote, protocol, verb, name) ?? this.chains.add(direction, remote, protocol, verb, name);
    const rules = chain.rules.version === this.version ? chain.rules : this.resolve(chain, now);
    const slot = rules.slot;
    if (rules.forced !== null) {
      slot.degradedForced++;
      return rules.forced;
    }
    const limits = rules.limits;
    let waitMs = 0;
    for (let i = 0; i < limits.length; i++) {
      const limiter = limits[i]!;
      const wait = limiter.acquire(now);
      if (wait < 0) {
        for (let j = 0; j < i; j++) limits[j]!.release();
        slot.limited++;
        return rejectedWith(slot, rules.fallback, limiter.answer);
      }
      if (wait > waitMs) waitMs = wait;
    }
    const call = this.pool.acquire();
    call.rules = rules;
    if (waitMs > 0) {
      call.state = WAITING;
      call.waitMs = waitMs;
      return call;
    }
    return admitBreakers(call, now, this.pool) ?? call;
  }

  /**
   * Visits the statistics of every key with calls since the last drain, then resets them. The view
   * is live: copy what is needed before returning.
   */
  drainStats(visit: (entry: StatsView) => void): void {
    this.chains.drain(visit);
  }

  /** Sizes of the bounded caches, for the agent's own metrics and for tests. */
  cacheSizes(): { chains: number; callers: number } {
    let callers = 0;
    for (const compiled of this.compiled.values()) if (compiled.kind === 'limit') callers += compiled.state.callers;
    return { chains: this.chains.size, callers };
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
    return (chain.rules = new Resolved(
      this.version,
      chain.slot,
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
