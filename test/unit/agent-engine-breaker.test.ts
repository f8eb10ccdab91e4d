import { describe, expect, it } from 'vitest';
import { type Call } from '../../agent/src/engine/types.js';
import { answered, breaker, concurrency, outcome, passed, qps, setup } from './agent-engine-support.js';

const errorRatio = (extra: Record<string, unknown> = {}) =>
  breaker('brk', { strategy: 'errorRatio', threshold: 0.5, minCalls: 4, windowMs: 1_000, openMs: 1_000, ...extra });

/** Completes calls with the given outcomes (true: error) at the current time. */
function complete(calls: Call[], errors: boolean[]): void {
  calls.forEach((call, i) => call.exit(errors[i] ?? false));
}

describe('breaker: CLOSED', () => {
  it('trips on the completion that makes total ≥ minCalls and bad / total ≥ threshold', () => {
    const { clock, get, events } = setup([errorRatio()]);
    const calls = [passed(get()), passed(get()), passed(get()), passed(get())];
    clock.now = 10;
    complete(calls.slice(0, 3), [false, true, true]); // 2 / 3 ≥ 0.5, but 3 < minCalls
    expect(events).toEqual([]);
    calls[3]!.exit(false); // 2 / 4 ≥ 0.5
    expect(events).toEqual([['brk', 'OPEN', 10]]);
  });

  it('never trips below minCalls', () => {
    const { get, events } = setup([errorRatio()]);
    complete([passed(get()), passed(get()), passed(get())], [true, true, true]);
    expect(events).toEqual([]);
    passed(get());
  });

  it('keeps 10 buckets of windowMs / 10 by completion time: the window spans 0.9–1 × windowMs', () => {
    const inWindow = setup([errorRatio()]);
    const a = [passed(inWindow.get()), passed(inWindow.get()), passed(inWindow.get()), passed(inWindow.get())];
    inWindow.clock.now = 99; // bucket 0
    complete(a.slice(0, 2), [true, true]);
    inWindow.clock.now = 999; // bucket 9: buckets 0–9 in the window
    complete(a.slice(2), [false, false]);
    expect(inWindow.events).toEqual([['brk', 'OPEN', 999]]);

    const outOfWindow = setup([errorRatio()]);
    const b = [passed(outOfWindow.get()), passed(outOfWindow.get()), passed(outOfWindow.get()), passed(outOfWindow.get())];
    outOfWindow.clock.now = 99;
    complete(b.slice(0, 2), [true, true]);
    outOfWindow.clock.now = 1_000; // bucket 10: bucket 0 has left the window
    complete(b.slice(2), [false, false]);
    expect(outOfWindow.events).toEqual([]);
    passed(outOfWindow.get());
  });

  it('records a call in the bucket of its completion, not of its admission', () => {
    const { clock, get, events } = setup([errorRatio()]);
    const early = [passed(get()), passed(get())];
    clock.now = 5_000;
    const late = [passed(get()), passed(get())];
    complete(early, [true, true]);
    complete(late, [false, false]);
    expect(events).toEqual([['brk', 'OPEN', 5_000]]);
  });

  it('errorCount: trips when bad ≥ threshold', () => {
    const { get, events } = setup([breaker('brk', { strategy: 'errorCount', threshold: 3, minCalls: 1 })]);
    complete([passed(get()), passed(get())], [true, true]);
    expect(events).toEqual([]);
    passed(get()).exit(true);
    expect(events).toEqual([['brk', 'OPEN', 0]]);
  });

  it('slowCallRatio: counts latency > slowCallMs only, errors ignored', () => {
    const { clock, get, events } = setup([breaker('brk', { strategy: 'slowCallRatio', slowCallMs: 100, minCalls: 2 })]);
    const calls = [passed(get()), passed(get()), passed(get())];
    clock.now = 100;
    calls[0]!.exit(true); // an error, but not slow
    calls[1]!.exit(false); // exactly slowCallMs: not slow
    clock.now = 101;
    calls[2]!.exit(false);
    expect(events).toEqual([]); // 1 / 3 < 1
    const slow = [passed(get()), passed(get()), passed(get())];
    clock.now = 202;
    complete(slow, [false, false, false]);
    // The window holds 6 calls, 4 slow; threshold 1 (the default) needs every call slow.
    expect(events).toEqual([]);
  });

  it('slowCallRatio: measures latency from the breaker’s admission, after a limit’s queue wait', () => {
    const rules = [
      qps('lim', { permitsPerSec: 10, queue: { maxWaitMs: 500 } }),
      breaker('brk', { strategy: 'slowCallRatio', slowCallMs: 100, threshold: 0.5, minCalls: 1 }),
    ];
    const { clock, get, events } = setup(rules);
    passed(get()); // takes the token, never completes
    const waiting = get() as Call;
    expect(waiting.waitMs).toBe(100);
    clock.now = 100;
    expect(waiting.resume()).toBeNull();
    clock.now = 200;
    waiting.exit(false); // 100 ms since admission, 200 since arrival: not slow, 0 / 1
    expect(events).toEqual([]);
    const slow = passed(get());
    clock.now = 301;
    slow.exit(false); // 1 / 2 ≥ 0.5
    expect(events).toEqual([['brk', 'OPEN', 301]]);
  });
});

/** A breaker opened at t = 10 by four calls, two of them errors. */
function opened(extra: Record<string, unknown> = {}) {
  const env = setup([errorRatio(extra)]);
  const calls = [passed(env.get()), passed(env.get()), passed(env.get()), passed(env.get())];
  env.clock.now = 10;
  complete(calls, [true, true, false, false]);
  expect(env.events).toEqual([['brk', 'OPEN', 10]]);
  return env;
}

describe('breaker: OPEN and HALF_OPEN', () => {
  it('rejects until openedAt + openMs, then lets the first call through as a probe; a good probe closes', () => {
    const { clock, get, events } = opened();
    clock.now = 1_009;
    const open = answered(get(), 'breaker-open', 'brk');
    expect(open.status).toBe(503);
    clock.now = 1_010;
    const probe = passed(get());
    expect(events.at(-1)).toEqual(['brk', 'HALF_OPEN', 1_010]);
    expect(answered(get(), 'breaker-half-open', 'brk').status).toBe(503);
    clock.now = 1_020;
    probe.exit(false);
    expect(events.at(-1)).toEqual(['brk', 'CLOSED', 1_020]);
    passed(get());
  });

  it('re-opens on a bad probe, with openedAt at the decision', () => {
    const { clock, get, events } = opened();
    clock.now = 1_010;
    const probe = passed(get());
    clock.now = 1_500;
    probe.exit(true);
    expect(events.slice(1)).toEqual([
      ['brk', 'HALF_OPEN', 1_010],
      ['brk', 'OPEN', 1_500],
    ]);
    clock.now = 2_499;
    answered(get(), 'breaker-open');
    clock.now = 2_500;
    passed(get());
  });

  it('empties the window on closing', () => {
    const { clock, get, events } = opened();
    clock.now = 1_010;
    passed(get()).exit(false);
    complete([passed(get()), passed(get()), passed(get())], [true, true, true]); // 3 < minCalls in the new window
    expect(events.at(-1)).toEqual(['brk', 'CLOSED', 1_010]);
  });

  it('ignores completions of calls admitted in an earlier phase', () => {
    const env = setup([errorRatio()]);
    const straggler = passed(env.get());
    const calls = [passed(env.get()), passed(env.get()), passed(env.get()), passed(env.get())];
    env.clock.now = 10;
    complete(calls, [true, true, false, false]);
    env.clock.now = 1_010;
    const probe = passed(env.get());
    straggler.exit(true); // admitted while CLOSED: not a probe
    expect(env.events.at(-1)).toEqual(['brk', 'HALF_OPEN', 1_010]);
    probe.exit(false);
    expect(env.events.at(-1)).toEqual(['brk', 'CLOSED', 1_010]);
  });

  it('ratios: decides when all probes completed, re-opening when bad / probes ≥ threshold', () => {
    for (const [errors, decision] of [
      [[true, false, false], 'CLOSED'],
      [[true, true, false], 'OPEN'],
    ] as const) {
      const { clock, get, events } = opened({ probes: 3 });
      clock.now = 1_010;
      const probes = [passed(get()), passed(get()), passed(get())];
      answered(get(), 'breaker-half-open');
      complete(probes.slice(0, 2), [...errors]);
      expect(events.at(-1)).toEqual(['brk', 'HALF_OPEN', 1_010]);
      clock.now = 1_100;
      probes[2]!.exit(errors[2]);
      expect(events.at(-1)).toEqual(['brk', decision, 1_100]);
    }
  });

  it('errorCount: re-opens when bad probes ≥ min(threshold, probes)', () => {
    for (const [errors, decision] of [
      [[true, true, false], 'CLOSED'],
      [[true, true, true], 'OPEN'],
    ] as const) {
      const env = setup([breaker('brk', { strategy: 'errorCount', threshold: 5, minCalls: 1, openMs: 1_000, probes: 3 })]);
      const calls = Array.from({ length: 5 }, () => passed(env.get()));
      complete(calls, [true, true, true, true, true]);
      env.clock.now = 1_000;
      complete([passed(env.get()), passed(env.get()), passed(env.get())], [...errors]);
      expect(env.events.map((e) => e[1])).toEqual(['OPEN', 'HALF_OPEN', decision]);
    }
  });

  it('decides at the first call at or after halfOpenAt + openMs, counting running probes bad', () => {
    const { clock, get, events } = opened({ probes: 2 });
    clock.now = 1_010;
    const probe = passed(get());
    clock.now = 2_009;
    passed(get()); // probe 2
    answered(get(), 'breaker-half-open');
    clock.now = 2_010;
    answered(get(), 'breaker-open'); // 2 running probes, both bad: re-opened at 2010
    expect(events.slice(1)).toEqual([
      ['brk', 'HALF_OPEN', 1_010],
      ['brk', 'OPEN', 2_010],
    ]);
    probe.exit(false); // after the decision: ignored
    expect(events).toHaveLength(3);
  });

  it('decides over the probes admitted when fewer arrived; a good one closes', () => {
    const { clock, get, events } = opened({ probes: 2 });
    clock.now = 1_010;
    passed(get()).exit(false);
    clock.now = 2_010;
    passed(get()); // decided first (1 probe, good: CLOSED), then admitted
    expect(events.at(-1)).toEqual(['brk', 'CLOSED', 2_010]);
  });

  it('decides at a probe completion at or after halfOpenAt + openMs', () => {
    const { clock, get, events } = opened({ probes: 2 });
    clock.now = 1_010;
    const probes = [passed(get()), passed(get())];
    clock.now = 2_100;
    probes[0]!.exit(false); // the other is running: 1 bad of 2 ≥ 0.5
    expect(events.at(-1)).toEqual(['brk', 'OPEN', 2_100]);
    probes[1]!.exit(false);
    expect(events).toHaveLength(3);
  });

  it('gives a probe slot back when a later breaker rejects the call, and releases the concurrency slots', () => {
    const rules = [
      concurrency('a-conc', 1),
      breaker('b1', { strategy: 'errorCount', threshold: 1, minCalls: 1, openMs: 100 }),
      breaker('b2', { strategy: 'errorCount', threshold: 1, minCalls: 1, openMs: 1_000 }),
    ];
    const { clock, get, events } = setup(rules);
    passed(get()).exit(true);
    expect(events).toEqual([
      ['b1', 'OPEN', 0],
      ['b2', 'OPEN', 0],
    ]);
    clock.now = 100;
    answered(get(), 'breaker-open', 'b2'); // b1 admitted it as its probe, then gave the slot back
    clock.now = 150;
    answered(get(), 'breaker-open', 'b2'); // b1 had a probe slot again (else 'breaker-half-open' by b1); a-conc's slot was released
    expect(events.at(-1)).toEqual(['b1', 'HALF_OPEN', 100]);
    // b1's half-open phase ends with no probe at all: it re-opens (see Breaker.decide).
    clock.now = 200;
    answered(get(), 'breaker-open', 'b1');
    clock.now = 299;
    answered(get(), 'breaker-open', 'b1');
    clock.now = 1_000;
    const probe = passed(get());
    expect(outcome(get())).toBe('limited:a-conc');
    probe.exit(false);
    expect(events.slice(3)).toEqual([
      ['b1', 'OPEN', 200],
      ['b1', 'HALF_OPEN', 1_000],
      ['b2', 'HALF_OPEN', 1_000],
      ['b1', 'CLOSED', 1_000],
      ['b2', 'CLOSED', 1_000],
    ]);
  });
});

describe('breaker: resets', () => {
  it('keeps the state of a rule pushed again unchanged; a changed rule starts CLOSED', () => {
    const { clock, engine, get, events } = opened();
    clock.now = 20;
    engine.apply([errorRatio()]);
    answered(get(), 'breaker-open');
    engine.apply([errorRatio({ openMs: 2_000 })]);
    expect(events.at(-1)).toEqual(['brk', 'CLOSED', 20]);
    passed(get());
  });

  it('drops the state of a disabled rule; re-enabled, it starts afresh', () => {
    const { engine, get } = opened();
    engine.apply(
      [errorRatio({}), breaker('other', { strategy: 'errorCount', threshold: 1 })].map((r) => ({ ...r, enabled: false })),
    );
    passed(get()).exit(true);
    engine.apply([errorRatio()]);
    passed(get());
  });
});
