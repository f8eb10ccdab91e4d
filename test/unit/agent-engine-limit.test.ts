import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_CALLERS } from '../../agent/src/engine/limit.js';
import { type Answer, type Call } from '../../agent/src/engine/types.js';
import { answered, concurrency, isCall, outcome, passed, qps, setup } from './agent-engine-support.js';

/** Offers `n` calls at the current time; completed at once. Returns how many passed without waiting. */
function offer(get: () => Call | Answer, n: number): number {
  let passes = 0;
  for (let i = 0; i < n; i++) {
    const result = get();
    if (isCall(result) && result.waitMs === 0) {
      passes++;
      result.exit(false);
    }
  }
  return passes;
}

describe('qps: token bucket', () => {
  it('passes a full bucket at once, then the sustained rate (exact refills of 0.5 tokens)', () => {
    const { clock, get } = setup([qps('lim', { permitsPerSec: 10 })]);
    const perSecond = [0, 0, 0];
    perSecond[0] = offer(get, 25);
    for (let t = 50; t < 3_000; t += 50) {
      clock.now = t;
      perSecond[Math.floor(t / 1000)]! += offer(get, 1);
    }
    // The default burst (10) at t = 0, then one call every 100 ms: 10 + 9 in the first second.
    expect(perSecond).toEqual([19, 10, 10]);
  });

  it('answers a rejected call with the rule, tokens unchanged', () => {
    const { clock, get } = setup([qps('lim', { permitsPerSec: 10, burst: 2 })]);
    expect([get(), get(), get()].map(outcome)).toEqual(['pass', 'pass', 'limited:lim']);
    clock.now = 50;
    expect(outcome(get())).toBe('limited:lim');
    clock.now = 100; // 0 + 0.5 (t = 50) + 0.5: exactly one token
    expect([get(), get()].map(outcome)).toEqual(['pass', 'limited:lim']);
  });

  it('allows fractions of a call per second', () => {
    const { clock, get } = setup([qps('lim', { permitsPerSec: 0.5 })]);
    const seen = [];
    for (let t = 0; t <= 4_000; t += 1_000) {
      clock.now = t;
      seen.push(outcome(get()));
    }
    expect(seen).toEqual(['pass', 'limited:lim', 'pass', 'limited:lim', 'pass']);
  });

  it('refills from the time the rule was applied, full', () => {
    const { clock, engine, get } = setup([], 5_000);
    engine.apply([qps('lim', { permitsPerSec: 1, burst: 3 })]);
    clock.now = 9_000;
    expect(offer(get, 5)).toBe(3);
  });
});

describe('qps: queue', () => {
  it('paces calls one interval apart with burst 1 (Sentinel rate limiter); tokens go negative', () => {
    const { clock, get } = setup([qps('lim', { permitsPerSec: 10, queue: { maxWaitMs: 500 } })]);
    expect(Array.from({ length: 8 }, () => outcome(get()))).toEqual([
      'pass',
      'wait:100',
      'wait:200',
      'wait:300',
      'wait:400',
      'wait:500',
      'limited:lim',
      'limited:lim',
    ]);
    clock.now = 100; // -5 + 1: the next slot is 500 ms away
    expect([get(), get()].map(outcome)).toEqual(['wait:500', 'limited:lim']);
  });

  it('passes a burst at once and queues the rest behind it', () => {
    const { get } = setup([qps('lim', { permitsPerSec: 10, burst: 3, queue: { maxWaitMs: 250 } })]);
    expect(Array.from({ length: 6 }, () => outcome(get()))).toEqual([
      'pass',
      'pass',
      'pass',
      'wait:100',
      'wait:200',
      'limited:lim',
    ]);
  });

  it('rounds waits up to whole ms: ceil((1 − tokens) × 1000 / rate)', () => {
    const { get } = setup([qps('lim', { permitsPerSec: 3, queue: { maxWaitMs: 1_000 } })]);
    expect(Array.from({ length: 5 }, () => outcome(get()))).toEqual(['pass', 'wait:334', 'wait:667', 'wait:1000', 'limited:lim']);
  });

  it('makes a call wait for the longest of its limits’ waits', () => {
    const { get } = setup([
      qps('q1', { permitsPerSec: 10, queue: { maxWaitMs: 1_000 } }),
      qps('q2', { permitsPerSec: 5, queue: { maxWaitMs: 1_000 } }),
    ]);
    expect([get(), get(), get()].map(outcome)).toEqual(['pass', 'wait:200', 'wait:400']);
  });

  it('runs the breakers only on resume(), after the wait', () => {
    const { clock, get, drain } = setup([qps('lim', { permitsPerSec: 10, queue: { maxWaitMs: 500 } })]);
    passed(get()).exit(false);
    const waiting = get() as Call;
    expect(waiting.waitMs).toBe(100);
    clock.now = 100;
    expect(waiting.resume()).toBeNull();
    expect(waiting.waitMs).toBe(0);
    clock.now = 130;
    waiting.exit(false);
    // Statistics measure latency from enter (the wait included): 0 and 130 ms.
    expect(drain()).toMatchObject([{ calls: 2, successes: 2, latencySumMs: 130, latencyMaxMs: 130 }]);
  });
});

describe('qps: warm-up', () => {
  const warmUp = () => qps('lim', { permitsPerSec: 30, warmUp: { periodSec: 3, coldFactor: 3 } });

  it('climbs from permitsPerSec / coldFactor to permitsPerSec one step per busy second, and cools the same way', () => {
    const { clock, get } = setup([warmUp()]);
    const at = (second: number, calls: number) => {
      clock.now = second * 1_000;
      return offer(get, calls);
    };
    // Cold: rate 10, capacity 10. Then rate = 30 × (1/3 + 2/3 × warm / 3): 16.67, 23.33, 30.
    expect([0, 1, 2, 3, 4].map((s) => at(s, 100))).toEqual([10, 16, 23, 30, 30]);
    // Second 5 has 5 calls (< 30 / 3): second 6 is one step cooler; second 7 warm again.
    expect([at(5, 5), at(6, 100), at(7, 100)]).toEqual([5, 23, 30]);
    // Six seconds without calls after second 7: warm 3 → 0, cold again.
    expect(at(14, 100)).toBe(10);
  });

  it('counts queued and rejected calls as offered', () => {
    const { clock, get } = setup([
      qps('lim', { permitsPerSec: 30, warmUp: { periodSec: 3, coldFactor: 3 }, queue: { maxWaitMs: 50 } }),
    ]);
    // Cold rate 10 with burst 1: one pass, nothing within 50 ms, but all 20 offered count.
    expect(Array.from({ length: 20 }, () => outcome(get())).filter((o) => o === 'pass')).toHaveLength(1);
    clock.now = 1_000; // warm 1: rate 16.67, one call every 60 ms
    expect([get(), get()].map(outcome)).toEqual(['pass', 'limited:lim']);
  });
});

describe('qps: warm-up with a queue', () => {
  it('fixes a wait at the rate of its reservation, so calls behind it may pass closer together once warmer', () => {
    const { clock, get } = setup([
      qps('lim', { permitsPerSec: 2, queue: { maxWaitMs: 1_065 }, warmUp: { periodSec: 2, coldFactor: 3 } }),
    ]);
    const seen = [241, 464, 748, 830, 888, 1_000].map((t) => {
      clock.now = t;
      return outcome(get());
    });
    // Cold rate 2/3: the call at 748 passes at 1741. At 1000 warmth 1 (rate 4/3) times the next at 2065,
    // 324 ms later, where permitsPerSec 2 alone would space them 500 ms apart (reported as a spec issue).
    expect(seen).toEqual(['pass', 'limited:lim', 'wait:993', 'limited:lim', 'limited:lim', 'wait:1065']);
  });
});

describe('concurrency', () => {
  it('rejects at once when maxConcurrent calls are in flight, and frees a slot on completion', () => {
    const { get } = setup([concurrency('conc', 2)]);
    const first = passed(get());
    passed(get());
    answered(get(), 'limited', 'conc');
    first.exit(true);
    passed(get());
    answered(get(), 'limited', 'conc');
  });

  it('releases the slot of a call that is answered by a later limit', () => {
    const { clock, get } = setup([concurrency('a', 1), qps('b', { permitsPerSec: 1 })]);
    passed(get()).exit(false);
    answered(get(), 'limited', 'b');
    clock.now = 1_000;
    passed(get()); // a's slot was given back
    answered(get(), 'limited', 'a');
  });

  it('releases the slot of a call that waits and then goes away', () => {
    const { clock, get } = setup([concurrency('a', 1), qps('b', { permitsPerSec: 10, queue: { maxWaitMs: 500 } })]);
    passed(get()).exit(false);
    const waiting = get() as Call;
    expect(waiting.waitMs).toBe(100);
    waiting.exit(true);
    clock.now = 200;
    passed(get());
  });
});

describe('several limits', () => {
  it('evaluates them in code-unit id order ("B" before "a"), the first rejection ends it', () => {
    const { get } = setup([qps('a', { permitsPerSec: 1 }), qps('B', { permitsPerSec: 1 })]);
    passed(get());
    answered(get(), 'limited', 'B');
  });

  it('does not return tokens taken by earlier limits', () => {
    const { get } = setup([qps('a', { permitsPerSec: 1, burst: 2 }), concurrency('b', 1)]);
    const first = passed(get());
    answered(get(), 'limited', 'b'); // took a's second token
    first.exit(false);
    answered(get(), 'limited', 'a');
  });
});

describe('perCaller', () => {
  const perCaller = () =>
    qps('lim', { permitsPerSec: 1, perCaller: true }, { direction: 'inbound', resource: { type: 'application' } });

  it('gives each caller its own bucket; unknown callers share one', () => {
    const { get } = setup([perCaller()]);
    const calls = ['web', 'web', 'mobile', '', '', 'mobile'].map((caller) => outcome(get('/x', caller)));
    expect(calls).toEqual(['pass', 'limited:lim', 'pass', 'pass', 'limited:lim', 'limited:lim']);
  });

  it(`keeps at most ${MAX_CALLERS} callers; the ones beyond share the unknown-caller bucket`, () => {
    const { engine, get } = setup([perCaller()]);
    for (let i = 0; i < MAX_CALLERS; i++) passed(get('/x', `app-${i}`));
    passed(get('/x', 'late-1'));
    answered(get('/x', 'late-2'), 'limited'); // shares late-1's bucket, the unknown callers' one
    answered(get('/x', ''), 'limited');
    for (let i = 0; i < 100_000; i++) get(`/x/${i % 7}`, `other-${i}`);
    expect(engine.cacheSizes().callers).toBe(MAX_CALLERS);
  });

  it('keeps a concurrency counter per caller', () => {
    const { get } = setup([concurrency('conc', 1, { direction: 'inbound', resource: { type: 'application' } }, true)]);
    passed(get('/x', 'web'));
    answered(get('/x', 'web'), 'limited');
    passed(get('/x', 'mobile'));
  });
});

describe('the qps guarantee', () => {
  it('never passes more than burst + permitsPerSec × d calls in any interval of d seconds', () => {
    fc.assert(
      fc.property(
        fc.record({
          permitsPerSec: fc.oneof(fc.integer({ min: 1, max: 200 }), fc.double({ min: 0.01, max: 200, noNaN: true })),
          burst: fc.option(fc.integer({ min: 1, max: 20 }), { nil: undefined }),
          queue: fc.option(fc.integer({ min: 1, max: 2_000 }), { nil: undefined }),
          warmUp: fc.boolean(),
          gaps: fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 250 }),
        }),
        ({ permitsPerSec, burst, queue, warmUp, gaps }) => {
          const limit: Record<string, unknown> = { permitsPerSec };
          if (burst !== undefined) limit.burst = burst;
          if (queue !== undefined) limit.queue = { maxWaitMs: queue };
          // Not with a queue: a wait is fixed at the rate of its reservation, so when warm-up raises the
          // rate, the calls queued behind it may pass closer together than permitsPerSec allows.
          if (warmUp && queue === undefined) limit.warmUp = { periodSec: 2, coldFactor: 3 };
          const r = qps('lim', limit);
          const size = r.kind === 'limit' && r.limit.mode === 'qps' ? r.limit.burst : 0;
          const { clock, get } = setup([r]);
          const passes: number[] = [];
          for (const gap of gaps) {
            clock.advance(gap);
            const result = get();
            if (isCall(result)) passes.push(clock.now + result.waitMs);
          }
          passes.sort((a, b) => a - b);
          // A queued call passes when its wait, rounded up to a whole ms, is over: up to 1 ms after
          // its token came due, while the calls behind it are timed from the token.
          const roundingSec = queue === undefined ? 0 : 0.001;
          for (let i = 0; i < passes.length; i++) {
            for (let j = i; j < passes.length; j++) {
              const seconds = (passes[j]! - passes[i]!) / 1000 + roundingSec;
              // 1e-9: IEEE rounding of the refill sums, far below one call.
              expect(j - i + 1).toBeLessThanOrEqual(size + permitsPerSec * seconds + 1e-9);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
