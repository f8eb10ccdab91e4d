/**
 * Agent decision cost: what the Node agent's engine adds to one guarded call (enter + exit), with
 * one qps limit, one error-ratio breaker and the per-second statistics, on an inbound HTTP path in
 * the steady state; opossum 10 and cockatiel 4 guarding a no-op in the same process for reference.
 *
 *   npm run bench:agent-decision
 *
 * Writes docs/benchmarks.md's "Agent decision cost" section.
 */
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import CircuitBreaker from 'opossum';
import { bulkhead, circuitBreaker, ConsecutiveBreaker, handleAll, wrap } from 'cockatiel';
import { parseRule, type Rule } from '../src/agent-protocol/rules.js';
import { Engine, HTTP, INBOUND, ManualClock } from '../agent/src/engine/index.js';
import { machine, percentile, writeSection } from './report.js';

const BATCH = 1_000;
const GOAL_P50_NS = 100;
const GOAL_FACTOR = 10;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function stored(raw: Record<string, unknown>): Rule {
  const parsed = parseRule({ application: 'orders', ...raw });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  return parsed.rule;
}

const target = { direction: 'inbound', resource: { type: 'http', method: 'GET', path: '/api/orders/{id}' } };
const rules = [
  stored({ id: 'lim', kind: 'limit', target, limit: { mode: 'qps', permitsPerSec: 1_000_000 } }),
  stored({ id: 'brk', kind: 'breaker', target, breaker: { strategy: 'errorRatio', threshold: 0.5 } }),
];

// The clock advances 1 ms per batch of 1,000 calls (or 1 ms per call): the limit sees at most
// 1,000,000 calls per simulated second, its rate, so every call passes whatever the machine's speed.
// Reading it costs what reading the agent's TickerClock costs (a field).
const clock = new ManualClock(0);
const engine = new Engine({ application: 'orders', clock });
engine.apply(rules);

/**
 * Request paths and caller headers arrive as new strings on every request (the HTTP parser makes
 * them), so their hashes are not cached yet: each batch gets fresh copies, made before timing.
 */
const fresh = (text: string, n: number) => Array.from({ length: n }, () => Buffer.from(text).toString('latin1'));

let failures = 0;
function engineBatch(paths: string[], callers: string[], tickEachCall = false): void {
  for (let i = 0; i < BATCH; i++) {
    const result = engine.enter(INBOUND, callers[i]!, HTTP, 'GET', paths[i]!);
    if (result.kind === 'call') result.exit(false);
    else failures++;
    if (tickEachCall) clock.advance(1);
  }
  if (!tickEachCall) clock.advance(1);
}

function sameStringsBatch(): void {
  for (let i = 0; i < BATCH; i++) {
    const result = engine.enter(INBOUND, 'web', HTTP, 'GET', '/api/orders/42');
    if (result.kind === 'call') result.exit(false);
    else failures++;
  }
  clock.advance(1);
}

interface Figures {
  p50: number;
  p99: number;
  perSec: number;
}

function summarise(perCallNs: number[], totalNs: number, calls: number): Figures {
  return { p50: percentile(perCallNs, 50), p99: percentile(perCallNs, 99), perSec: calls / (totalNs / 1e9) };
}

function measureEngine(batches: number, strings: 'fresh' | 'same', tickEachCall = false): Figures {
  const perCall: number[] = [];
  let total = 0;
  for (let b = 0; b < batches; b++) {
    const paths = strings === 'fresh' ? fresh('/api/orders/42', BATCH) : [];
    const callers = strings === 'fresh' ? fresh('web', BATCH) : [];
    const started = process.hrtime.bigint();
    if (strings === 'fresh') engineBatch(paths, callers, tickEachCall);
    else sameStringsBatch();
    const ns = Number(process.hrtime.bigint() - started);
    perCall.push(ns / BATCH);
    total += ns;
    // The agent drains statistics once a second.
    if (b % 1_000 === 999) engine.drainStats(() => undefined);
  }
  return summarise(perCall, total, batches * BATCH);
}

/**
 * Heap allocated per call: heapUsed before and after 100,000 calls (fresh strings, made beforehand),
 * following a full GC; median of 15 samples.
 */
function engineHeapPerCall(): number {
  const samples: number[] = [];
  for (let s = 0; s < 15; s++) {
    const paths = Array.from({ length: 100 }, () => fresh('/api/orders/42', BATCH));
    const callers = Array.from({ length: 100 }, () => fresh('web', BATCH));
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let b = 0; b < 100; b++) engineBatch(paths[b]!, callers[b]!);
    samples.push((process.memoryUsage().heapUsed - before) / (100 * BATCH));
  }
  return percentile(samples, 50);
}

async function measureAsync(batches: number, call: () => Promise<unknown>): Promise<Figures> {
  const perCall: number[] = [];
  let total = 0;
  for (let b = 0; b < batches; b++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < BATCH; i++) await call();
    const ns = Number(process.hrtime.bigint() - started);
    perCall.push(ns / BATCH);
    total += ns;
  }
  return summarise(perCall, total, batches * BATCH);
}

const noop = () => Promise.resolve();

async function main(): Promise<void> {
  // Warm up: let the optimising compiler settle on every path measured.
  measureEngine(3_000, 'fresh');
  measureEngine(3_000, 'same');
  measureEngine(1_000, 'fresh', true);
  const engineFresh = measureEngine(20_000, 'fresh');
  const engineSame = measureEngine(20_000, 'same');
  const engineTicking = measureEngine(20_000, 'fresh', true);
  const heap = engineHeapPerCall();

  // opossum has no rate limiter: its semaphore (capacity) and volume threshold are the nearest
  // options. Measured as shipped (a 10 s timeout: a timer per call) and with the timeout off, the
  // like-for-like setting (the engine times nothing).
  const opossumOptions = {
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
    rollingCountTimeout: 1_000,
    rollingCountBuckets: 10,
    resetTimeout: 10_000,
    capacity: 1_000_000,
  };
  const opossumFigures: Figures[] = [];
  for (const timeout of [10_000, false] as const) {
    const opossum = new CircuitBreaker(noop, { ...opossumOptions, timeout });
    await measureAsync(300, () => opossum.fire());
    opossumFigures.push(await measureAsync(2_000, () => opossum.fire()));
    opossum.shutdown();
  }
  const [opossumDefault, opossumNoTimeout] = opossumFigures as [Figures, Figures];

  // cockatiel 4 has no rate limiter either: a bulkhead stands for the limit.
  const cockatiel = wrap(
    bulkhead(1_000_000, 0),
    circuitBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) }),
  );
  await measureAsync(300, () => cockatiel.execute(noop));
  const cockatielFigures = await measureAsync(2_000, () => cockatiel.execute(noop));

  if (failures > 0) throw new Error(`${failures} engine calls were not let through: the benchmark is invalid`);

  const fmt = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
  const rate = (n: number) => `${(n / 1e6).toFixed(2)} M`;
  const row = (name: string, f: Figures, heapCell: string) =>
    `| ${name} | ${fmt(f.p50)} | ${fmt(f.p99)} | ${rate(f.perSec)} | ${heapCell} |`;
  const p50Met = engineFresh.p50 <= GOAL_P50_NS;
  const factor = (opossum: Figures) => opossum.p50 / engineFresh.p50;
  const verdict = (opossum: Figures) => `${factor(opossum) >= GOAL_FACTOR ? 'met' : 'not met'} (${factor(opossum).toFixed(2)}×)`;
  const lines = [
    '## Agent decision cost',
    '',
    `Run ${new Date().toISOString().slice(0, 10)} on ${machine()}, with \`npm run bench:agent-decision\`. The cost one guarded`,
    'call pays in the Node agent: `Engine.enter` + `Call.exit` for an inbound `GET /api/orders/42` matched by one qps limit',
    '(1,000,000/s, every call passes) and one error-ratio breaker, statistics recorded, in the steady state after a warm-up.',
    `Timed in batches of ${BATCH.toLocaleString('en')} calls with \`process.hrtime.bigint()\`; p50 / p99 are over the batches' mean per call.`,
    'The request path and the caller header are new strings on every request in a real server (the HTTP parser makes them),',
    'so the first row gives each call fresh copies, made before the timed batch; the second reuses one string object.',
    'The clock (the agent reads a field refreshed every ms) moves 1 ms per batch, as at 1 M calls/s, so the bucket refills',
    'once per ms; the third row moves it every call (a refill, and a new breaker bucket every 100 calls, on each call).',
    'Side by side in the same process: opossum 10 (`CircuitBreaker` around a no-op; its semaphore `capacity` and',
    '`volumeThreshold` as the nearest equivalent of a limit), as shipped (10 s timeout, a timer per call) and with',
    '`timeout: false`, and cockatiel 4 (`wrap(bulkhead, circuitBreaker(handleAll, ConsecutiveBreaker(5)))` around a no-op);',
    'neither library has a rate limiter, and each of their calls is awaited.',
    '',
    '| guarded call | p50 ns | p99 ns | calls/s | heap allocated per call |',
    '|---|---|---|---|---|',
    row('Steward engine, fresh path and caller strings', engineFresh, `${heap.toFixed(1)} B`),
    row('Steward engine, the same string objects', engineSame, ''),
    row('Steward engine, fresh strings, the clock moving 1 ms every call', engineTicking, ''),
    row('opossum 10, default timeout', opossumDefault, ''),
    row('opossum 10, `timeout: false`', opossumNoTimeout, ''),
    row('cockatiel 4', cockatielFigures, ''),
    '',
    'Heap per call: `process.memoryUsage().heapUsed` before and after 100,000 engine calls (fresh strings made beforehand)',
    'following a full GC (`gc` exposed through `v8.setFlagsFromString`), median of 15 samples; 0 means the steady state',
    'allocates nothing.',
    '',
    `Goals, against the fresh-strings row: p50 ≤ ${GOAL_P50_NS} ns — ${p50Met ? 'met' : 'not met'} (${fmt(engineFresh.p50)} ns); ` +
      `≥ ${GOAL_FACTOR}× faster than opossum (p50 against p50) — against opossum as shipped ${verdict(opossumDefault)}, ` +
      `against opossum without its timeout ${verdict(opossumNoTimeout)}.`,
  ];
  console.log(lines.join('\n'));
  await writeSection('agent-decision', lines);
}

await main();
