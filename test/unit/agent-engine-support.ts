import { expect } from 'vitest';
import { parseRule, type Rule } from '../../src/agent-protocol/rules.js';
import { ManualClock } from '../../agent/src/engine/clock.js';
import { Engine } from '../../agent/src/engine/engine.js';
import {
  HTTP,
  INBOUND,
  OUTBOUND,
  DUBBO,
  type Answer,
  type BreakerState,
  type Call,
  type StatsView,
} from '../../agent/src/engine/types.js';

/** Shared by the agent-engine-*.test.ts files: rules through the real schema, an engine on a manual clock. */

export const APP = 'orders';

/** A stored rule with every default applied, as an agent receives it. */
export function rule(raw: Record<string, unknown>): Rule {
  const parsed = parseRule({ application: APP, ...raw });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  return parsed.rule;
}

export const httpTarget = (path = '/api/orders/{id}', method?: string) => ({
  direction: 'inbound',
  resource: { type: 'http', path, ...(method ? { method } : {}) },
});

export const qps = (id: string, limit: Record<string, unknown>, target: object = httpTarget()) =>
  rule({ id, kind: 'limit', target, limit: { mode: 'qps', ...limit } });

export const concurrency = (id: string, maxConcurrent: number, target: object = httpTarget(), perCaller = false) =>
  rule({ id, kind: 'limit', target, limit: { mode: 'concurrency', maxConcurrent, perCaller } });

export const breaker = (id: string, spec: Record<string, unknown>, target: object = httpTarget()) =>
  rule({ id, kind: 'breaker', target, breaker: spec });

export const degrade = (id: string, target: object, force = true, fallback: object = {}) =>
  rule({ id, kind: 'degrade', target, force, fallback });

export function setup(rules: Rule[], now = 0) {
  const clock = new ManualClock(now);
  const events: [string, BreakerState, number][] = [];
  const engine = new Engine({ application: APP, clock, onBreakerState: (id, state, at) => events.push([id, state, at]) });
  engine.apply(rules);
  /** An inbound HTTP call. */
  const get = (path = '/api/orders/7', caller = 'web', method = 'GET') => engine.enter(INBOUND, caller, HTTP, method, path);
  const dubbo = (iface: string, method: string, remote = 'web', direction: 0 | 1 = INBOUND) =>
    engine.enter(direction, remote, DUBBO, iface, method);
  const outbound = (callee: string, path: string, method = 'GET') => engine.enter(OUTBOUND, callee, HTTP, method, path);
  /** Every key's statistics since the last drain, all seconds, flattened: the key's fields and the counters. */
  const drain = (before = Infinity) => {
    const out: Record<string, unknown>[] = [];
    engine.drainStats((s: StatsView) => out.push(flatten(s)), before);
    return out;
  };
  return { clock, engine, events, get, dubbo, outbound, drain };
}

/** A statistics view copied: its key's fields, its second and counters, the histogram as an array. */
export function flatten(s: StatsView): Record<string, unknown> {
  const { direction, remote, protocol, verb, name, overflow } = s.key;
  return {
    direction,
    remote,
    protocol,
    verb,
    name,
    overflow,
    second: s.second,
    calls: s.calls,
    successes: s.successes,
    errors: s.errors,
    limited: s.limited,
    broken: s.broken,
    degraded: s.degraded,
    forced: s.forced,
    slow: s.slow,
    latencySumMs: s.latencySumMs,
    latencyMaxMs: s.latencyMaxMs,
    latencyHistogram: Array.from(s.latencyHistogram),
  };
}

export function isCall(result: Call | Answer): result is Call {
  return result.kind === 'call';
}

/** The call was let through at once (no wait); returns it. */
export function passed(result: Call | Answer): Call {
  expect(result.kind, isCall(result) ? '' : `answered ${result.reason} by ${result.ruleId}`).toBe('call');
  const call = result as Call;
  expect(call.waitMs).toBe(0);
  return call;
}

/** The call was answered; returns the answer. */
export function answered(result: Call | Answer, reason?: Answer['reason'], ruleId?: string): Answer {
  expect(result.kind).toBe('answer');
  const answer = result as Answer;
  if (reason !== undefined) expect(answer.reason).toBe(reason);
  if (ruleId !== undefined) expect(answer.ruleId).toBe(ruleId);
  return answer;
}

/** What each result was: 'pass', 'wait:<ms>', or '<reason>:<rule>'. */
export function outcome(result: Call | Answer): string {
  if (isCall(result)) return result.waitMs > 0 ? `wait:${result.waitMs}` : 'pass';
  return `${result.reason}:${result.ruleId}`;
}
