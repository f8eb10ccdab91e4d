/**
 * Statistics queries: one application's hour at 1-minute steps, and the dashboard's other reads of
 * that hour, against a server whose database holds that hour for the application (X_INSTANCES
 * instances, default 10) and for NOISE_APPS other applications (default 49, NOISE_INSTANCES each),
 * 5–10 call keys per instance and second with latency histograms (docs/stats.md).
 *
 * The hour is produced straight to Kafka in the ingest's message format (faster than through
 * agents), consumed and rolled up by one aggregator process (`node dist/stats/aggregator-main.js`,
 * left running: a deployment has one); the queries go to a server process with
 * `STATS_AGGREGATOR=off`, one at a time, QUERIES times each after a warm-up, each kind for at most
 * QUERY_BUDGET seconds:
 *
 * - `GET /api/stats/series?application=X&from=…&to=…&step=1m` (the goal: p99 ≤ 100 ms);
 * - the same for one resource (`direction`, `resource`);
 * - `GET /api/stats/top?application=X&by=resource&metric=qps` over the hour;
 * - `GET /api/stats/graph` over the hour (every application);
 * - the hour's last 5 minutes at 1 s steps (the 1 s resolution, which is what Sentinel's dashboard keeps).
 *
 * The hour is the last whole hour of minutes before the run (fixed for the run, so every query reads
 * the same data). Topic and database are the run's own and deleted at the end (KEEP_DATA=1 keeps them).
 *
 *   npm run bench:stats-query         (stack up and `npm run build` first)
 *   X_INSTANCES=2 NOISE_APPS=5 FILL_SECONDS=600 QUERIES=30 npm run bench:stats-query      (smoke)
 *
 * Prints a markdown section for docs/benchmarks.md (BENCH_WRITE=1 writes it there).
 */
import { loadavg } from 'node:os';
import { machine, percentile, writeSection } from './report.js';
import {
  appName,
  bodyPool,
  checkWorkload,
  envNumber as env,
  every,
  exitAfter,
  type FillInstance,
  fillMessages,
  fixed,
  fmt,
  GroupProgress,
  instanceKeys,
  kafkaClient,
  newRun,
  prng,
  produceAll,
  runCleanup,
  sleep,
  startAggregatorProcess,
  startStatsServer,
  stopChild,
  topicEnd,
  topicExists,
} from './stats-load.js';

const X_INSTANCES = Math.max(1, env('X_INSTANCES', 10));
const NOISE_APPS = env('NOISE_APPS', 49);
const NOISE_INSTANCES = env('NOISE_INSTANCES', 1);
const FILL_SECONDS = Math.min(3_600, Math.max(300, env('FILL_SECONDS', 3_600)));
const QUERIES = Math.max(1, env('QUERIES', 200));
const WARMUP_QUERIES = env('WARMUP_QUERIES', 10);
const QUERY_BUDGET_S = env('QUERY_BUDGET', 120);
const ROLLUP_TIMEOUT_S = env('ROLLUP_TIMEOUT', 1_800);
const WRITE = process.env.BENCH_WRITE === '1';
const GOAL_MS = 100;

const APPS = 1 + NOISE_APPS;
const id = Date.now().toString(36);
const PREFIX = `benchq-${id}`;
const X = appName(PREFIX, 0);
const ADMIN = `bench-admin-token-${id}-0123456789`;
const TOPIC = `steward.stats.benchq.${id}`;
const DB = `steward_bench_statsq_${id}`;

let stopping = false;
/** Stops every process gracefully, then deletes the run's topic and database (once, whoever asks first). */
const cleanup = runCleanup([TOPIC], [DB], () => (stopping = true));

interface QueryResult {
  name: string;
  reads: string;
  path: string;
  ms: number[];
  bytes: number;
  goal: string;
  check: string;
}

async function main(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  // The hour: the last 60 whole minutes before now, fixed for the run; data fills its last FILL_SECONDS.
  const hourEnd = Math.floor(Date.now() / 60_000) * 60;
  const hourStart = hourEnd - 3_600;
  const dataStart = hourEnd - FILL_SECONDS;

  const instances: FillInstance[] = [];
  for (let app = 0; app < APPS; app++) {
    for (let i = 0; i < (app === 0 ? X_INSTANCES : NOISE_INSTANCES); i++) {
      instances.push({
        app,
        instanceId: `${appName(PREFIX, app)}-i${i}`,
        run: newRun(),
        keys: instanceKeys(PREFIX, app, APPS, app * 1_000 + i),
      });
    }
  }
  const pool = bodyPool(1_024, 11);
  checkWorkload(instances[0]!.keys, pool);
  // X's inbound resource reported by the most instances: the per-resource query's filter.
  const counts = new Map<string, number>();
  for (const inst of instances.filter((x) => x.app === 0))
    for (const key of inst.keys) if (key.direction === 'inbound') counts.set(key.resource, (counts.get(key.resource) ?? 0) + 1);
  const resource = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];

  const expected = new Array<number>(APPS).fill(0);
  let expectedResource = 0;
  let expectedLast5Min = 0;
  const total = instances.length * FILL_SECONDS;

  const admin = kafkaClient(`bench-statsq-${id}`).admin();
  await admin.connect();
  const results: QueryResult[] = [];
  const figures: Record<string, number> = {};
  try {
    // The aggregator first: it creates the topic (with its partition count).
    const aggregator = startAggregatorProcess(TOPIC, DB, () => stopping);
    const server = await startStatsServer(TOPIC, DB, ADMIN);
    const api = server.api;
    for (const deadline = Date.now() + 60_000; !(await topicExists(admin, TOPIC)); await sleep(250)) {
      if (Date.now() > deadline) throw new Error(`the aggregator did not create ${TOPIC}`);
      if (aggregator.exitCode !== null) throw new Error('the aggregator exited');
    }

    // ---- fill: second by second, every instance, as agents would have sent it.
    console.log(
      `producing ${fmt(total)} frames: ${X} × ${X_INSTANCES} instances and ${NOISE_APPS} other applications × ${NOISE_INSTANCES}, ` +
        `${FILL_SECONDS} s each, to ${TOPIC}`,
    );
    const next = fillMessages(PREFIX, instances, total, dataStart, pool, prng(23), (inst, frame, calls) => {
      expected[inst.app]! += calls;
      if (inst.app === 0) {
        for (const e of frame.entries) if (e.direction === 'inbound' && e.resource === resource) expectedResource += e.calls;
        if (frame.second >= hourEnd - 300) expectedLast5Min += calls;
      }
    });
    const fillStarted = performance.now();
    const logDue = every(5_000);
    await produceAll(kafkaClient(`bench-statsq-fill-${id}`), TOPIC, next, {
      onProgress: (n) => {
        if (logDue()) console.log(`  produced ${fmt(n)} / ${fmt(total)}`);
      },
    });
    const fillSec = (performance.now() - fillStarted) / 1000;

    // ---- consumed, then rolled up (the API's 1-minute totals equal what was produced).
    const end = await topicEnd(admin, TOPIC);
    const progress = new GroupProgress(admin, TOPIC);
    for (const deadline = performance.now() + ROLLUP_TIMEOUT_S * 1000; (await progress.committed()) < end; await sleep(1_000)) {
      if (performance.now() > deadline) throw new Error(`the aggregator did not consume ${fmt(end)} messages in time`);
      if (aggregator.exitCode !== null) throw new Error('the aggregator exited');
      if (logDue()) {
        console.log(`  consumed ${fmt(await progress.committed())} / ${fmt(end)}`);
      }
    }
    const consumedSec = (performance.now() - fillStarted) / 1000;
    const range = `from=${hourStart * 1000}&to=${hourEnd * 1000}`;
    const checkApps = [...new Set([0, 1, Math.floor(APPS / 2), APPS - 1])].filter((a) => a < APPS);
    const sumOf = async (app: number) =>
      (
        await api<{ points: { calls: number }[] }>(`/api/stats/series?application=${appName(PREFIX, app)}&${range}&step=1m`)
      ).body.points.reduce((s, p) => s + p.calls, 0);
    for (const deadline = performance.now() + ROLLUP_TIMEOUT_S * 1000; ; await sleep(2_000)) {
      const seen = await Promise.all(checkApps.map(sumOf));
      if (seen.every((n, k) => n === expected[checkApps[k]!])) break;
      if (performance.now() > deadline)
        throw new Error(
          `not rolled up in time: ${checkApps.map((a, k) => `${appName(PREFIX, a)} ${seen[k]} of ${expected[a]}`).join(', ')}`,
        );
      if (logDue()) {
        console.log(`  rolling up: ${X} shows ${fmt(seen[0]!)} of ${fmt(expected[0]!)} calls`);
      }
    }
    const rolledSec = (performance.now() - fillStarted) / 1000;
    console.log(
      `filled in ${fillSec.toFixed(1)} s (${fmt(total / fillSec)} messages/s), consumed after ${consumedSec.toFixed(1)} s, ` +
        `1-minute totals exact after ${rolledSec.toFixed(1)} s`,
    );
    Object.assign(figures, { fillSec, consumedSec, rolledSec, loadBefore });

    // ---- the queries, one kind at a time, one request at a time.
    const encoded = encodeURIComponent(resource);
    const last5 = `from=${(hourEnd - 300) * 1000}&to=${hourEnd * 1000}`;
    const kinds: Omit<QueryResult, 'ms' | 'bytes' | 'check'>[] = [
      {
        name: `series of ${X}, the hour at 1 min steps`,
        reads: 'X, 1 min resolution',
        path: `/api/stats/series?application=${X}&${range}&step=1m`,
        goal: `p99 ≤ ${GOAL_MS} ms`,
      },
      {
        name: 'the same for one resource (`direction=inbound&resource=…`)',
        reads: 'X, 1 min resolution, one key',
        path: `/api/stats/series?application=${X}&${range}&step=1m&direction=inbound&resource=${encoded}`,
        goal: '',
      },
      {
        name: `top 10 resources of ${X} by qps, the hour`,
        reads: 'X, 1 min resolution',
        path: `/api/stats/top?application=${X}&${range}&by=resource&metric=qps&limit=10`,
        goal: '',
      },
      {
        name: `dependency graph, the hour (${APPS} applications)`,
        reads: 'every application, 1 min resolution',
        path: `/api/stats/graph?${range}`,
        goal: '',
      },
      {
        name: `series of ${X}, the last 5 minutes at 1 s steps`,
        reads: `X, 1 s resolution (${X_INSTANCES} frames a second)`,
        path: `/api/stats/series?application=${X}&${last5}&step=1s`,
        goal: '',
      },
    ];
    for (const kind of kinds) {
      const ms: number[] = [];
      let first: { bytes: number; body: unknown } | undefined;
      for (let i = 0; i < WARMUP_QUERIES; i++) first ??= await api(kind.path);
      const budget = performance.now() + QUERY_BUDGET_S * 1000;
      for (let i = 0; i < QUERIES && performance.now() < budget; i++) {
        const res = await api(kind.path);
        first ??= res;
        ms.push(res.ms);
      }
      const result: QueryResult = { ...kind, ms, bytes: first!.bytes, check: check(kind.path, first!.body) };
      results.push(result);
      console.log(
        `${kind.name}: p50 ${fixed(percentile(ms, 50), 1)} / p99 ${fixed(percentile(ms, 99), 1)} / max ${fixed(Math.max(...ms), 1)} ms ` +
          `over ${ms.length}, ${fmt(first!.bytes)} bytes; ${result.check}`,
      );
    }
    stopping = true;
    await stopChild(server.child);
    await stopChild(aggregator);
  } finally {
    stopping = true;
    await admin.disconnect().catch(() => undefined);
    await cleanup();
  }

  /** The first response of each kind, checked against what was produced. */
  function check(path: string, body: unknown): string {
    const points = (body as { points?: { calls: number }[] }).points;
    const calls = points?.reduce((s, p) => s + p.calls, 0);
    if (path.includes('resource=')) return calls === expectedResource ? 'calls exact' : `calls ${calls} ≠ ${expectedResource}`;
    if (path.includes('step=1s')) return calls === expectedLast5Min ? 'calls exact' : `calls ${calls} ≠ ${expectedLast5Min}`;
    if (path.includes('/series')) return calls === expected[0] ? 'calls exact' : `calls ${calls} ≠ ${expected[0]}`;
    if (path.includes('/top')) return `${(body as { items: unknown[] }).items.length} items`;
    const graph = body as { nodes: unknown[]; edges: unknown[] };
    return `${graph.nodes.length} nodes, ${graph.edges.length} edges`;
  }

  const rows = results.map(
    (r) =>
      `| ${r.name} | ${r.reads} | ${fixed(percentile(r.ms, 50), 1)} / ${fixed(percentile(r.ms, 90), 1)} / ${fixed(percentile(r.ms, 99), 1)} / ${fixed(Math.max(...r.ms), 1)} ms (${r.ms.length}) | ${fmt(r.bytes)} | ${r.check} | ${r.goal ? `${r.goal}: ${percentile(r.ms, 99) <= GOAL_MS ? 'met' : 'not met'}` : ''} |`,
  );
  const table = [
    '| query | reads | p50 / p90 / p99 / max (requests) | response bytes | first answer | goal |',
    '|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  const params = `X_INSTANCES=${X_INSTANCES} NOISE_APPS=${NOISE_APPS} NOISE_INSTANCES=${NOISE_INSTANCES} FILL_SECONDS=${FILL_SECONDS} QUERIES=${QUERIES}`;
  const lines = [
    '## Statistics queries',
    '',
    `Run ${new Date().toISOString().slice(0, 10)} on ${machine()}, with \`npm run bench:stats-query\` (${params}), against the local`,
    "stack (FerretDB 1.24 on SQLite — not MongoDB's figures). The database holds one application's hour",
    `(${X_INSTANCES} instances) and ${NOISE_APPS} other applications' (${NOISE_INSTANCES} instance${NOISE_INSTANCES === 1 ? '' : 's'} each), the last ${FILL_SECONDS} s of the hour:`,
    `${fmt(total)} stats frames of 5–10 call keys with latency histograms, produced to Kafka in the ingest's format in`,
    `${figures['fillSec']!.toFixed(1)} s, consumed by one aggregator process after ${figures['consumedSec']!.toFixed(0)} s and rolled up (the API's 1-minute totals exact for`,
    `the sampled applications) after ${figures['rolledSec']!.toFixed(0)} s. The aggregator keeps running during the queries, as in a deployment;`,
    `the queries go to one server process (\`STATS_AGGREGATOR=off\`), one at a time, ${WARMUP_QUERIES} warm-up requests then up to ${QUERIES} timed`,
    `(at most ${QUERY_BUDGET_S} s per kind), round trip measured by the client on the same machine.`,
    '',
    table,
    '',
    `Machine load when the benchmark started (1-minute load average): ${loadBefore.toFixed(2)}. Sentinel's dashboard, named in the issue`,
    'as the peer, keeps only the last 5 minutes in its own memory (the 1 s row is the comparable read); it cannot run',
    'here, so no peer figures are given.',
  ];
  console.log(`\n${lines.join('\n')}\n`);
  if (WRITE) await writeSection('stats-query', lines);
}

exitAfter(main, cleanup);
