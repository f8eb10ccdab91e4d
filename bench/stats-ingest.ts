/**
 * Statistics through Kafka, end to end, in three phases (docs/stats.md):
 *
 * 1. Ingest: one Steward server process (`STATS_AGGREGATOR=off`) and AGENTS simulated agents
 *    (default 20,000, in WORKERS child processes, bench/stats-agents-client.ts) of APPS
 *    applications (default 500), each agent sending one `stats` frame a second (5–10 entries with
 *    latency histograms in the protocol's buckets), phase-shifted over the second, and keeping each
 *    frame until its `stats-ack` (a refused one is sent again, as agents do), for SECONDS seconds
 *    (default 20) after WARMUP_SECONDS: frames made by the agents vs produced to Kafka by the server
 *    (its /metrics), refused, `stats-ack`s, the server's CPU and RSS, the broker's CPU.
 * 2. Aggregator catch-up: the agents go; the topic holds phase 1's frames, topped up to BACKLOG
 *    messages (default 1,000,000; produced directly with kafkajs in the ingest's message format);
 *    one aggregator process (`node dist/stats/aggregator-main.js`) starts and drains it (at most
 *    CATCHUP_TIMEOUT seconds, default 600): messages consumed per second (its consumer group's
 *    committed offsets), its CPU and RSS and FerretDB's. Then exactness: the API's totals of
 *    SAMPLE_APPS applications (default 10) at 1 s and at 1 min resolution equal the calls of the
 *    frames made (polled for at most ROLLUP_TIMEOUT seconds, default 600).
 * 3. End-to-end delay: a fresh server + aggregator pair (fresh topic and database) under a steady
 *    load (E2E_AGENTS agents; default half the catch-up rate just measured), and one probe agent
 *    sending at each second's turn the frame of the second that ended, with a call count no other
 *    second has; the API's 1 s series is polled every POLL_MS (100) until the second shows it:
 *    delay = seen − end of the second the calls were made in, over E2E_SAMPLES seconds (60).
 *
 * Every run has its own topics and databases, deleted at the end (KEEP_DATA=1 keeps them; a
 * database is dropped only once FerretDB runs nothing of ours: see stats-load.ts `unclean`).
 * AGGREGATOR_LOG=<file> keeps the aggregators' log lines.
 *
 *   npm run bench:stats-ingest        (stack up and `npm run build` first; long: the catch-up)
 *   AGENTS=500 WORKERS=2 SECONDS=5 BACKLOG=3000 E2E_AGENTS=50 E2E_SAMPLES=10 npm run bench:stats-ingest      (smoke)
 *
 * Prints a markdown section for docs/benchmarks.md (BENCH_WRITE=1 writes it there).
 */
import { type ChildProcess } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Admin } from 'kafkajs';
import { AgentWorker, stopWorkers } from './agent-worker.js';
import { machine, percentile, writeSection } from './report.js';
import type { ParentCommand, Progress, Report } from './stats-agents-client.js';
import {
  appName,
  bodyPool,
  cpuMs,
  envNumber as env,
  every,
  exitAfter,
  ferretIdle,
  fillMessages,
  fixed,
  fmt,
  GroupProgress,
  instanceKeys,
  kafkaClient,
  LagSampler,
  memory,
  metrics,
  metricSum,
  newRun,
  prng,
  produceAll,
  RssSampler,
  runCleanup,
  sleep,
  stackPid,
  startAggregatorProcess,
  startChild,
  startStatsServer,
  statsFrame,
  type StatsServer as Server,
  stopChild,
  topicEnd,
  topicExists,
  wallNow,
} from './stats-load.js';
import { StatsProbe } from './stats-probe.js';

const AGENTS = env('AGENTS', 20_000);
const WORKERS = Math.max(1, Math.min(AGENTS, env('WORKERS', 8)));
const APPS = Math.max(1, env('APPS', 500));
const SECONDS = env('SECONDS', 20);
const WARMUP_SECONDS = env('WARMUP_SECONDS', 3);
/** New connections per second, all workers together. */
const CONNECT_RATE = env('CONNECT_RATE', 500);
const BACKLOG = env('BACKLOG', 1_000_000);
const CATCHUP_TIMEOUT_S = env('CATCHUP_TIMEOUT', 600);
const ROLLUP_TIMEOUT_S = env('ROLLUP_TIMEOUT', 600);
const SAMPLE_APPS = Math.max(1, env('SAMPLE_APPS', 10));
const E2E_SAMPLES = env('E2E_SAMPLES', 60);
const E2E_WARMUP_SECONDS = env('E2E_WARMUP_SECONDS', 5);
const POLL_MS = env('POLL_MS', 100);
const WRITE = process.env.BENCH_WRITE === '1';
const HEARTBEAT_MS = 30_000;
/** Seconds of data each directly-produced instance contributes to the backlog. */
const FILL_SECONDS = 120;
/** A probe second not visible after this long is counted as missing. */
const PROBE_TIMEOUT_MS = 30_000;

const GOAL_INGEST = 20_000;
const GOAL_CONSUME = 100_000;
const GOAL_E2E_P99_MS = 3_000;

const id = Date.now().toString(36);
const PREFIX = `bench-${id}`;
const ADMIN = `bench-admin-token-${id}-0123456789`;
const TOPIC = `steward.stats.bench.${id}`;
const DB = `steward_bench_stats_${id}`;
const TOPIC_E2E = `${TOPIC}.e2e`;
const DB_E2E = `${DB}_e2e`;
const PROBE_APP = `${PREFIX}-probe`;
const CLIENT = fileURLToPath(new URL('./stats-agents-client.ts', import.meta.url));

let stopping = false;
/** Stops every process gracefully, then deletes the run's topics and databases (once, whoever asks first). */
const cleanup = runCleanup([TOPIC, TOPIC_E2E], [DB, DB_E2E], () => (stopping = true));

// ---- processes -----------------------------------------------------------------------------------

const startServer = (topic: string, db: string) =>
  startStatsServer(topic, db, ADMIN, { AGENT_HEARTBEAT_MS: String(HEARTBEAT_MS) });

interface Aggregator {
  child: ChildProcess;
  pid: number;
  /** The aggregator's own count by outcome, from its last log line that carried it (the one at stop is final). */
  totals?: Record<string, number>;
}

function startAggregator(topic: string, db: string): Aggregator {
  const aggregator: Aggregator = { child: undefined as unknown as ChildProcess, pid: 0 };
  aggregator.child = startAggregatorProcess(
    topic,
    db,
    () => stopping,
    (entry) => {
      const totals = entry['messages'];
      if (totals && typeof totals === 'object') aggregator.totals = totals as Record<string, number>;
    },
  );
  aggregator.pid = aggregator.child.pid!;
  return aggregator;
}

class Worker extends AgentWorker<ParentCommand, Progress, Report> {
  constructor(
    child: ChildProcess,
    readonly count: number,
  ) {
    super(child, () => stopping);
  }

  override command(command: ParentCommand): void {
    if (this.child.connected) super.command(command);
  }

  report(totals = false): Promise<Report> {
    return this.request((id) => ({ type: 'report', id, totals }), 20_000);
  }
}

/** Starts `agents` simulated agents in `workers` processes and waits until all have an established session. */
async function connectAgents(server: Server, token: string, agents: number, workers: number, seed: number): Promise<Worker[]> {
  const started = performance.now();
  const list: Worker[] = [];
  for (let w = 0; w < workers; w++) {
    const first = Math.floor((w * agents) / workers);
    const count = Math.floor(((w + 1) * agents) / workers) - first;
    const worker = new Worker(startChild(['--import', 'tsx', CLIENT], process.env, { ipc: true }), count);
    worker.command({
      type: 'start',
      urls: [server.url],
      token,
      prefix: PREFIX,
      apps: APPS,
      first,
      count,
      connectsPerSec: CONNECT_RATE / workers,
      seed,
      rules: false,
    });
    list.push(worker);
  }
  const deadline = performance.now() + 60_000 + (agents / CONNECT_RATE) * 3_000;
  let lastLog = 0;
  for (;;) {
    const established = sum(list, (p) => p.established);
    if (established === agents) break;
    if (performance.now() - lastLog > 3_000) {
      lastLog = performance.now();
      const errors = sum(list, (p) => p.connectErrors);
      const last = list.find((w) => w.progress?.lastError)?.progress?.lastError;
      console.log(`established ${fmt(established)} / ${fmt(agents)}${errors ? `, connect errors ${errors} (${last})` : ''}`);
    }
    if (server.child.exitCode !== null) throw new Error('the server exited');
    if (performance.now() > deadline) throw new Error(`only ${established} agents established a session`);
    await sleep(200);
  }
  console.log(`${fmt(agents)} agents established in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return list;
}

const sum = (workers: Worker[], pick: (p: Progress) => number) =>
  workers.reduce((total, w) => total + (w.progress ? pick(w.progress) : 0), 0);

// ---- phase 1: ingest ---------------------------------------------------------------------------

interface IngestMark {
  t: number;
  made: number;
  sent: number;
  acksAccepted: number;
  acksRefused: number;
  produced: number;
  dropped: number;
  serverCpu: number;
  kafkaCpu: number;
  workersCpu: number;
}

async function ingestMark(server: Server, workers: Worker[], kafkaPid: number | undefined): Promise<IngestMark> {
  const t = wallNow();
  const [reports, text, serverCpu, kafkaCpu] = await Promise.all([
    Promise.all(workers.map((w) => w.report())),
    metrics(server.url),
    cpuMs(server.pid),
    cpuMs(kafkaPid),
  ]);
  const total = (pick: (r: Report) => number) => reports.reduce((s, r) => s + pick(r), 0);
  return {
    t,
    made: total((r) => r.made),
    sent: total((r) => r.sent),
    acksAccepted: total((r) => r.acksAccepted),
    acksRefused: total((r) => r.acksRefused),
    produced: metricSum(text, 'steward_stats_frames_total', 'outcome="produced"'),
    dropped: metricSum(text, 'steward_stats_frames_total', 'outcome="dropped"'),
    serverCpu,
    kafkaCpu,
    workersCpu: total((r) => r.cpuMs),
  };
}

interface IngestResult {
  connectSec: number;
  /** Per second over the measured window, except `dropped` and the acks (counts). */
  window: {
    seconds: number;
    offered: number;
    emitted: number;
    produced: number;
    dropped: number;
    acksAccepted: number;
    acksRefused: number;
  };
  serverCores: number;
  kafkaCores: number;
  workersCores: number;
  rssBefore: number;
  rssConnected: number;
  rssMax: number;
  queueMax: number;
  /** Whole phase, warm-up and settling included. */
  totals: Pick<Report, 'made' | 'sent' | 'resent' | 'held' | 'dropped' | 'errorFrames' | 'disconnects' | 'connectErrors'>;
  totalProduced: number;
  totalDropped: number;
  settleSec: number;
  firstSecond: number;
  /** Calls of the frames made (less those the agents dropped) per application index. */
  calls: number[];
}

async function ingestPhase(server: Server, kafkaPid: number | undefined): Promise<{ result: IngestResult; workers: Worker[] }> {
  const rssBefore = (await memory(server.pid)).rss;
  const issued = await server.api<{ token: string }>('/api/tokens', {
    method: 'POST',
    body: JSON.stringify({ name: `${PREFIX}-agents`, role: 'agent' }),
  });
  const connectStarted = performance.now();
  const workers = await connectAgents(server, issued.body.token, AGENTS, WORKERS, 1);
  const connectSec = (performance.now() - connectStarted) / 1000;
  await sleep(2_000);
  const rssConnected = (await memory(server.pid)).rss;

  const firstSecond = Math.floor(Date.now() / 1_000);
  for (const worker of workers) worker.command({ type: 'send', active: worker.count });
  console.log(`sending: ${fmt(AGENTS)} agents, one frame a second each; ${WARMUP_SECONDS} s warm-up, then ${SECONDS} s measured`);
  await sleep(WARMUP_SECONDS * 1_000);
  const rss = new RssSampler(server.pid).start();
  let queueMax = 0;
  const queueTimer = setInterval(() => {
    metrics(server.url).then(
      (text) => (queueMax = Math.max(queueMax, metricSum(text, 'steward_stats_queue'))),
      () => undefined,
    );
  }, 1_000);
  const a = await ingestMark(server, workers, kafkaPid);
  for (let s = 0; s < SECONDS; s++) {
    await sleep(1_000);
    if (s % 5 === 4 || s === SECONDS - 1) {
      console.log(
        `  ${s + 1} s: agents made ${fmt(sum(workers, (x) => x.made) - a.made)} frames in the window, hold ${fmt(sum(workers, (x) => x.held))}`,
      );
    }
    if (server.child.exitCode !== null) throw new Error('the server exited');
  }
  const b = await ingestMark(server, workers, kafkaPid);
  clearInterval(queueTimer);
  rss.stop();
  for (const worker of workers) worker.command({ type: 'send', active: 0 });

  // Before phase 2 reads the topic: every frame emitted is produced or refused, and (when the server
  // acknowledges) the agents hold nothing more: refused frames were sent again and produced.
  const settleStarted = performance.now();
  let produced: number;
  let dropped: number;
  let reports: Report[];
  for (const deadline = performance.now() + 120_000; ;) {
    await sleep(1_000);
    reports = await Promise.all(workers.map((w) => w.report()));
    const sent = reports.reduce((s, r) => s + r.sent, 0);
    const held = reports.reduce((s, r) => s + r.held, 0);
    const acks = reports.reduce((s, r) => s + r.acksAccepted + r.acksRefused, 0);
    const text = await metrics(server.url);
    produced = metricSum(text, 'steward_stats_frames_total', 'outcome="produced"');
    dropped = metricSum(text, 'steward_stats_frames_total', 'outcome="dropped"');
    if (produced + dropped >= sent && metricSum(text, 'steward_stats_queue') === 0 && (acks === 0 || held === 0)) break;
    if (performance.now() > deadline) {
      console.error(
        `the ingest did not settle: ${sent} sent, ${produced} produced, ${dropped} refused, ${held} held by the agents`,
      );
      break;
    }
  }
  const settleSec = (performance.now() - settleStarted) / 1000;
  const finals = await Promise.all(workers.map((w) => w.report(true)));
  const calls = new Array<number>(APPS).fill(0);
  for (const report of finals) report.calls?.forEach((n, i) => (calls[i]! += n));
  const total = (pick: (r: Report) => number) => finals.reduce((s, r) => s + pick(r), 0);
  const seconds = (b.t - a.t) / 1000;
  const result: IngestResult = {
    connectSec,
    window: {
      seconds,
      offered: (b.made - a.made) / seconds,
      emitted: (b.sent - a.sent) / seconds,
      produced: (b.produced - a.produced) / seconds,
      dropped: b.dropped - a.dropped,
      acksAccepted: b.acksAccepted - a.acksAccepted,
      acksRefused: b.acksRefused - a.acksRefused,
    },
    serverCores: (b.serverCpu - a.serverCpu) / (b.t - a.t),
    kafkaCores: (b.kafkaCpu - a.kafkaCpu) / (b.t - a.t),
    workersCores: (b.workersCpu - a.workersCpu) / (b.t - a.t),
    rssBefore,
    rssConnected,
    rssMax: rss.max,
    queueMax,
    totals: {
      made: total((r) => r.made),
      sent: total((r) => r.sent),
      resent: total((r) => r.resent),
      held: total((r) => r.held),
      dropped: total((r) => r.dropped),
      errorFrames: total((r) => r.errorFrames),
      disconnects: total((r) => r.disconnects),
      connectErrors: total((r) => r.connectErrors),
    },
    totalProduced: produced,
    totalDropped: dropped,
    settleSec,
    firstSecond,
    calls,
  };
  console.log(
    `ingest: offered ${fmt(result.window.offered)} frames/s (emitted ${fmt(result.window.emitted)}/s), produced ${fmt(result.window.produced)}/s, ` +
      `refused ${result.window.dropped}; server CPU ${fixed(result.serverCores, 2)} cores, RSS max ${fixed(rss.max)} MiB; in all ` +
      `${fmt(result.totals.made)} frames made, ${fmt(result.totals.sent)} emitted, ${fmt(produced)} produced, ${fmt(dropped)} refused ` +
      `(settled ${settleSec.toFixed(1)} s after the agents stopped making frames)`,
  );
  return { result, workers };
}

// ---- phase 2: aggregator catch-up ----------------------------------------------------------------

interface CatchUpResult {
  fromIngest: number;
  filled: number;
  fillRate: number;
  backlog: number;
  drained: boolean;
  consumed: number;
  drainSec: number;
  overallRate: number;
  steadyRate: number;
  best10sRate: number;
  aggregatorCores: number;
  aggregatorRssMax: number;
  ferretCores: number;
  ferretRssMax: number;
  kafkaCores: number;
  totals?: Record<string, number>;
  exact?: Exactness[];
}

/**
 * Produces `count` messages of instances of FILL_SECONDS seconds each, starting at second `base`
 * (minutes back, inside the facts horizon); adds their calls to `calls`.
 */
async function fill(count: number, base: number, calls: number[]): Promise<number> {
  const instances = Array.from({ length: Math.ceil(count / FILL_SECONDS) }, (_, k) => ({
    app: k % APPS,
    instanceId: `${PREFIX}-fill${k}`,
    run: newRun(),
    keys: instanceKeys(PREFIX, k % APPS, APPS, 1_000_000 + k),
  }));
  const next = fillMessages(PREFIX, instances, count, base, bodyPool(512, 31), prng(37), (instance, _, n) => {
    calls[instance.app]! += n;
  });
  const logDue = every(5_000);
  return produceAll(kafkaClient(`bench-stats-fill-${id}`), TOPIC, next, {
    onProgress: (n) => {
      if (logDue()) console.log(`  produced ${fmt(n)} / ${fmt(count)}`);
    },
  });
}

async function catchUpPhase(
  server: Server,
  admin: Admin,
  ingest: IngestResult,
  kafkaPid: number | undefined,
  ferretPid: number | undefined,
) {
  const calls = [...ingest.calls];
  if (!(await topicExists(admin, TOPIC))) throw new Error(`topic ${TOPIC} does not exist: phase 1 produced nothing`);
  const fromIngest = await topicEnd(admin, TOPIC);
  const need = Math.max(0, BACKLOG - fromIngest);
  let filled = 0;
  let fillRate = NaN;
  const fillBase = Math.floor(Date.now() / 1_000) - 300 - FILL_SECONDS;
  if (need > 0) {
    console.log(`topping the backlog up: ${fmt(need)} messages produced directly to ${TOPIC}`);
    const started = performance.now();
    filled = await fill(need, fillBase, calls);
    fillRate = (filled * 1000) / (performance.now() - started);
  }
  const backlog = await topicEnd(admin, TOPIC);
  console.log(
    `backlog: ${fmt(backlog)} messages (${fmt(fromIngest)} from the ingest, ${fmt(filled)} produced directly); starting the aggregator`,
  );

  const cpu0 = { ferret: await cpuMs(ferretPid), kafka: await cpuMs(kafkaPid) };
  const t0 = wallNow();
  const aggregator = startAggregator(TOPIC, DB);
  const aggRss = new RssSampler(aggregator.pid).start();
  const ferretRss = new RssSampler(ferretPid).start();
  const progress = new GroupProgress(admin, TOPIC);
  const timeline: { t: number; consumed: number }[] = [];
  let drained = false;
  let aggCpu: number;
  let lastLog = 0;
  for (const deadline = t0 + CATCHUP_TIMEOUT_S * 1000; ;) {
    await sleep(1_000);
    if (aggregator.child.exitCode !== null) throw new Error('the aggregator exited');
    const consumed = await progress.committed();
    const t = wallNow();
    timeline.push({ t, consumed });
    if (consumed >= backlog) {
      drained = true;
      aggCpu = await cpuMs(aggregator.pid);
      break;
    }
    if (t - lastLog > 5_000) {
      lastLog = t;
      console.log(`  ${((t - t0) / 1000).toFixed(0)} s: ${fmt(consumed)} / ${fmt(backlog)} consumed`);
    }
    if (t > deadline) {
      aggCpu = await cpuMs(aggregator.pid);
      console.error(`the backlog was not drained in ${CATCHUP_TIMEOUT_S} s`);
      break;
    }
  }
  const end = timeline[timeline.length - 1]!;
  const cpu1 = { ferret: await cpuMs(ferretPid), kafka: await cpuMs(kafkaPid) };
  aggRss.stop();
  ferretRss.stop();
  const first = timeline.findIndex((x) => x.consumed > 0);
  // From the sample before the first commit (the aggregator was consuming since then at the latest).
  const startOfWork = first > 0 ? timeline[first - 1]! : { t: t0, consumed: 0 };
  let best10sRate = NaN;
  for (let i = 0; i < timeline.length; i++) {
    const later = timeline.slice(i).find((x) => x.t - timeline[i]!.t >= 10_000);
    if (!later) break;
    best10sRate = Math.max(
      Number.isNaN(best10sRate) ? 0 : best10sRate,
      ((later.consumed - timeline[i]!.consumed) * 1000) / (later.t - timeline[i]!.t),
    );
  }
  const elapsed = end.t - t0;
  const result: CatchUpResult = {
    fromIngest,
    filled,
    fillRate,
    backlog,
    drained,
    consumed: end.consumed,
    drainSec: elapsed / 1000,
    overallRate: (end.consumed * 1000) / elapsed,
    steadyRate: ((end.consumed - startOfWork.consumed) * 1000) / (end.t - startOfWork.t),
    best10sRate,
    aggregatorCores: aggCpu / elapsed,
    aggregatorRssMax: aggRss.max,
    ferretCores: (cpu1.ferret - cpu0.ferret) / elapsed,
    ferretRssMax: ferretRss.max,
    kafkaCores: (cpu1.kafka - cpu0.kafka) / elapsed,
  };
  console.log(
    `catch-up: ${fmt(end.consumed)} of ${fmt(backlog)} in ${result.drainSec.toFixed(1)} s: ${fmt(result.overallRate)} messages/s overall, ` +
      `${fmt(result.steadyRate)}/s from the first commit, best 10 s ${fmt(best10sRate)}/s; aggregator ${fixed(result.aggregatorCores, 2)} cores, ` +
      `FerretDB ${fixed(result.ferretCores, 2)} cores`,
  );

  // Checked drained or not: the windows may be written (and queryable) before the offsets are committed.
  result.exact = await exactness(server, calls, Math.min(ingest.firstSecond, fillBase));
  stopping = true;
  await stopChild(aggregator.child);
  stopping = false;
  result.totals = aggregator.totals;
  return result;
}

interface Exactness {
  step: '1s' | '1m';
  checked: number;
  matched: number;
  sentCalls: number;
  seenCalls: number;
  afterDrainSec: number;
  mismatches: string[];
}

/**
 * Polls the API until the sampled applications' totals equal the calls sent, at 1 s resolution (the
 * frames as stored), then at 1 min (rolled up); one deadline, ROLLUP_TIMEOUT after the catch-up phase.
 */
async function exactness(server: Server, calls: number[], firstSecond: number): Promise<Exactness[]> {
  const started = performance.now();
  const deadline = started + ROLLUP_TIMEOUT_S * 1000;
  const withData = calls.map((n, i) => ({ n, i })).filter((x) => x.n > 0);
  const every = Math.max(1, Math.floor(withData.length / SAMPLE_APPS));
  const sample = withData.filter((_, k) => k % every === 0).slice(0, SAMPLE_APPS);
  const from = (Math.floor(firstSecond / 60) - 1) * 60_000;
  const to = (Math.ceil(Date.now() / 60_000) + 1) * 60_000;
  const results: Exactness[] = [];
  for (const step of ['1s', '1m'] as const) {
    let seen = new Map<number, number>();
    for (;;) {
      seen = new Map();
      for (const { i } of sample) {
        const series = await server.api<{ points: { calls: number }[] }>(
          `/api/stats/series?application=${appName(PREFIX, i)}&from=${from}&to=${to}&step=${step}`,
        );
        seen.set(
          i,
          series.body.points.reduce((s, p) => s + p.calls, 0),
        );
      }
      if (sample.every(({ i, n }) => seen.get(i) === n) || performance.now() > deadline) break;
      await sleep(1_000);
    }
    const mismatches = sample
      .filter(({ i, n }) => seen.get(i) !== n)
      .map(({ i, n }) => `${appName(PREFIX, i)}: ${seen.get(i)} ≠ ${n}`);
    const result: Exactness = {
      step,
      checked: sample.length,
      matched: sample.length - mismatches.length,
      sentCalls: sample.reduce((s, x) => s + x.n, 0),
      seenCalls: sample.reduce((s, x) => s + (seen.get(x.i) ?? 0), 0),
      afterDrainSec: (performance.now() - started) / 1000,
      mismatches,
    };
    results.push(result);
    console.log(
      `exactness at ${step}: ${result.matched} / ${result.checked} sampled applications' totals equal the calls sent ` +
        `(${fmt(result.seenCalls)} / ${fmt(result.sentCalls)} calls), ${result.afterDrainSec.toFixed(1)} s after the catch-up phase` +
        (mismatches.length > 0 ? `; ${mismatches.slice(0, 5).join('; ')}` : ''),
    );
  }
  return results;
}

// ---- phase 3: end-to-end delay -----------------------------------------------------------------

interface E2eResult {
  agents: number;
  offered: number;
  produced: number;
  maxLag: number;
  endLag: number;
  delays: number[];
  missing: number;
  /** Probe frames the server refused (each sent again after 1 s). */
  probeRefused: number;
  queryMs: number[];
  aggregatorCores: number;
  serverCores: number;
  ferretCores: number;
  totals?: Record<string, number>;
}

async function e2ePhase(agents: number, admin: Admin, ferretPid: number | undefined): Promise<E2eResult> {
  const server = await startServer(TOPIC_E2E, DB_E2E);
  const aggregator = startAggregator(TOPIC_E2E, DB_E2E);
  const issued = await server.api<{ token: string }>('/api/tokens', {
    method: 'POST',
    body: JSON.stringify({ name: `${PREFIX}-agents`, role: 'agent' }),
  });
  const workers = await connectAgents(server, issued.body.token, agents, Math.min(WORKERS, Math.ceil(agents / 2_500)), 2);
  let probe: StatsProbe | undefined;
  try {
    for (const worker of workers) worker.command({ type: 'send', active: worker.count });
    // The aggregator has joined and consumes the load before the first probe.
    const progress = new GroupProgress(admin, TOPIC_E2E);
    for (const deadline = Date.now() + 120_000; (await progress.committed()) === 0; await sleep(500)) {
      if (Date.now() > deadline) throw new Error('the aggregator consumed nothing in 120 s');
      if (aggregator.child.exitCode !== null) throw new Error('the aggregator exited');
    }
    await sleep(E2E_WARMUP_SECONDS * 1_000);
    probe = await StatsProbe.connect(server.url, issued.body.token, PROBE_APP);

    const mark = async () => ({
      t: wallNow(),
      made: (await Promise.all(workers.map((w) => w.report()))).reduce((s, r) => s + r.made, 0),
      produced: metricSum(await metrics(server.url), 'steward_stats_frames_total', 'outcome="produced"'),
      server: await cpuMs(server.pid),
      aggregator: await cpuMs(aggregator.pid),
      ferret: await cpuMs(ferretPid),
    });
    const a = await mark();
    const lag = new LagSampler(admin, TOPIC_E2E, progress);
    const probed = await probe.run(server.api, E2E_SAMPLES, POLL_MS, PROBE_TIMEOUT_MS);
    const { delays, missing, queryMs } = probed.readings['1s']!;
    const probeRefused = probed.refused;
    const b = await mark();
    await lag.stop();
    const ms = b.t - a.t;
    const result: E2eResult = {
      agents,
      offered: ((b.made - a.made) * 1000) / ms,
      produced: ((b.produced - a.produced) * 1000) / ms,
      maxLag: lag.max,
      endLag: lag.last,
      delays,
      missing,
      probeRefused,
      queryMs,
      aggregatorCores: (b.aggregator - a.aggregator) / ms,
      serverCores: (b.server - a.server) / ms,
      ferretCores: (b.ferret - a.ferret) / ms,
    };
    console.log(
      `end-to-end: ${delays.length} samples, p50 ${fixed(percentile(delays, 50))} / p99 ${fixed(percentile(delays, 99))} / max ` +
        `${fixed(Math.max(...delays))} ms, ${missing} missing; load ${fmt(result.offered)} frames/s, consumer lag max ${fmt(lag.max)} messages`,
    );
    return result;
  } finally {
    probe?.close();
    await stopWorkers(workers);
    stopping = true;
    await stopChild(server.child);
    await stopChild(aggregator.child);
    stopping = false;
  }
}

// ---- main ----------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  const kafkaPid = await stackPid('kafka');
  const ferretPid = await stackPid('mongodb');
  // The average frame as sent (JSON), from the same generator as the agents.
  const rnd = prng(5);
  const pool = bodyPool(512, 5);
  let bytes = 0;
  let entries = 0;
  for (let k = 0; k < 500; k++) {
    const { frame } = statsFrame(1, Math.floor(Date.now() / 1000), instanceKeys(PREFIX, k % APPS, APPS, k), pool, rnd);
    bytes += JSON.stringify(frame).length;
    entries += frame.entries.length;
  }
  const frameShape = { bytes: bytes / 500, entries: entries / 500 };

  const admin = kafkaClient(`bench-stats-${id}`).admin();
  await admin.connect();
  let ingest: IngestResult | undefined;
  let catchUp: CatchUpResult | undefined;
  let e2e: E2eResult | undefined;
  let ferretSettled = false;
  let ferretSettleSec = 0;
  try {
    // ---- 1 and 2: one server (no aggregator), its agents; then the aggregator on the backlog.
    const server = await startServer(TOPIC, DB);
    console.log(`server up (pid ${server.pid}), topic ${TOPIC}, database ${DB}`);
    let workers: Worker[] = [];
    try {
      ({ result: ingest, workers } = await ingestPhase(server, kafkaPid));
      // The agents go (the aggregator gets the machine); the server stays for the exactness queries.
      await stopWorkers(workers);
      catchUp = await catchUpPhase(server, admin, ingest, kafkaPid, ferretPid);
    } finally {
      await stopWorkers(workers);
      stopping = true;
      await stopChild(server.child);
      stopping = false;
    }

    // ---- 3: a fresh pair under a load the aggregator sustains.
    const e2eAgents = Math.max(
      1,
      Math.round(
        process.env.E2E_AGENTS !== undefined
          ? env('E2E_AGENTS', 0)
          : Math.min(AGENTS, Number.isFinite(catchUp.steadyRate) ? catchUp.steadyRate / 2 : 1_000),
      ),
    );
    if (E2E_SAMPLES > 0) {
      // FerretDB may still run phase 2's last operations (an aggregator stopping mid-chunk leaves them).
      const settled = performance.now();
      ferretSettled = await ferretIdle(120_000);
      ferretSettleSec = (performance.now() - settled) / 1000;
      console.log(
        `end-to-end phase: ${fmt(e2eAgents)} agents (topic ${TOPIC_E2E}, database ${DB_E2E}); FerretDB ` +
          `${ferretSettled ? 'idle' : 'still busy'} after ${ferretSettleSec.toFixed(0)} s`,
      );
      e2e = await e2ePhase(e2eAgents, admin, ferretPid);
    }
  } finally {
    stopping = true;
    await admin.disconnect().catch(() => undefined);
    await cleanup();
  }
  await report(ingest, catchUp, e2e, { loadBefore, frameShape, ferretSettled, ferretSettleSec });
}

async function report(
  ingest: IngestResult,
  catchUp: CatchUpResult,
  e2e: E2eResult | undefined,
  extra: { loadBefore: number; frameShape: { bytes: number; entries: number }; ferretSettled: boolean; ferretSettleSec: number },
): Promise<void> {
  const goal = (value: number, target: number, load: number, loadGoal: number, unit: string) =>
    load < loadGoal
      ? `≥ ${fmt(target)} ${unit}: not tested at that load`
      : `≥ ${fmt(target)} ${unit}: ${value >= target ? 'met' : 'not met'}`;
  const w = ingest.window;
  const t = ingest.totals;
  const ex = catchUp.exact;
  const totals = catchUp.totals;
  const rows: [string, string, string][] = [
    [
      `**Ingest** — agents connected and sessions established (${fmt(CONNECT_RATE)} new connections/s)`,
      `${fmt(AGENTS)} in ${ingest.connectSec.toFixed(1)} s`,
      '',
    ],
    [
      `stats frames offered: made by the agents (one a second each, ${fixed(extra.frameShape.entries, 1)} entries, ${fmt(extra.frameShape.bytes)} bytes of JSON on average), over ${w.seconds.toFixed(1)} s; emitted, resends included`,
      `${fmt(w.offered)} frames/s; ${fmt(w.emitted)}/s`,
      '',
    ],
    [
      'frames produced to Kafka by the server (`steward_stats_frames_total{outcome="produced"}`)',
      `${fmt(w.produced)} frames/s`,
      goal(w.produced, GOAL_INGEST, AGENTS, GOAL_INGEST, 'batches/s'),
    ],
    [
      'refused by the server (queue full: `outcome="dropped"`) in the window / in the whole phase',
      `${fmt(w.dropped)} / ${fmt(ingest.totalDropped)}`,
      '0',
    ],
    [
      '`stats-ack` received by the agents in the window: accepted / refused',
      w.acksAccepted + w.acksRefused > 0
        ? `${fmt(w.acksAccepted)} / ${fmt(w.acksRefused)}`
        : 'none (the server sends no stats-ack)',
      '',
    ],
    [
      'whole phase: frames made / emitted (resends) / produced; settled after the agents stopped',
      `${fmt(t.made)} / ${fmt(t.sent)} (${fmt(t.resent)}) / ${fmt(ingest.totalProduced)}; ${ingest.settleSec.toFixed(1)} s`,
      '',
    ],
    ['ingest queue, largest sampled (`steward_stats_queue`)', `${fmt(ingest.queueMax)} frames`, ''],
    [
      'server CPU (cores busy) in the window; per 1,000 frames produced',
      `${fixed(ingest.serverCores, 2)}; ${fixed((ingest.serverCores * 1e6) / Math.max(1, w.produced), 0)} ms`,
      '',
    ],
    [
      'server RSS: before agents → connected → largest while sending',
      `${fixed(ingest.rssBefore)} → ${fixed(ingest.rssConnected)} → ${fixed(ingest.rssMax)} MiB`,
      '',
    ],
    ['Kafka broker CPU (cores busy) in the window', fixed(ingest.kafkaCores, 2), ''],
    [`simulated agents' CPU, ${WORKERS} processes (cores busy)`, fixed(ingest.workersCores, 2), ''],
    [
      'agent side: connect errors / disconnects / error frames / frames dropped (buffer full) / still held',
      `${t.connectErrors} / ${t.disconnects} / ${t.errorFrames} / ${t.dropped} / ${t.held}`,
      '0 / 0 / 0 / 0 / 0',
    ],
    [
      `**Aggregator catch-up** — backlog on the topic (from the ingest + produced directly${Number.isFinite(catchUp.fillRate) ? `, at ${fmt(catchUp.fillRate)} messages/s` : ''})`,
      `${fmt(catchUp.backlog)} (${fmt(catchUp.fromIngest)} + ${fmt(catchUp.filled)})`,
      '',
    ],
    [
      "drained by one aggregator process (its group's committed offsets), from its start",
      catchUp.drained
        ? `in ${catchUp.drainSec.toFixed(1)} s`
        : `not drained: ${fmt(catchUp.consumed)} in ${catchUp.drainSec.toFixed(0)} s`,
      '',
    ],
    [
      'messages consumed per second: from the process start / from its first commit / best 10 s',
      `${fmt(catchUp.overallRate)} / ${fmt(catchUp.steadyRate)} / ${fmt(catchUp.best10sRate)}`,
      goal(catchUp.steadyRate, GOAL_CONSUME, catchUp.backlog, GOAL_CONSUME, 'messages/s'),
    ],
    [
      'aggregator CPU (cores busy) and largest RSS',
      `${fixed(catchUp.aggregatorCores, 2)}, ${fixed(catchUp.aggregatorRssMax)} MiB`,
      '',
    ],
    [
      'FerretDB CPU (cores busy) and largest RSS; Kafka broker CPU',
      `${fixed(catchUp.ferretCores, 2)}, ${fixed(catchUp.ferretRssMax)} MiB; ${fixed(catchUp.kafkaCores, 2)}`,
      '',
    ],
    [
      "the aggregator's own count: counted / duplicate / malformed / late / rejected",
      totals
        ? `${fmt(totals['counted'] ?? NaN)} / ${fmt(totals['duplicate'] ?? NaN)} / ${fmt(totals['malformed'] ?? NaN)} / ${fmt(totals['late'] ?? NaN)} / ${fmt(totals['rejected'] ?? NaN)}`
        : 'not logged',
      `counted + duplicate = ${fmt(catchUp.backlog)}; 0 / 0 / 0`,
    ],
    ...(ex ?? []).map((x): [string, string, string] => [
      `exactness at ${x.step === '1s' ? '1 s resolution (the frames as stored)' : '1 min resolution (rolled up)'}: sampled applications whose totals (API) equal the calls of the frames made by the agents and the direct producer`,
      `${x.matched} / ${x.checked} (${fmt(x.seenCalls)} of ${fmt(x.sentCalls)} calls), ${x.afterDrainSec.toFixed(1)} s after the catch-up phase ended`,
      'all, exactly',
    ]),
    ...(ex ? [] : [['exactness', 'not checked (not drained)', 'all, exactly'] as [string, string, string]]),
  ];
  if (e2e) {
    const d = e2e.delays;
    rows.push(
      [
        `**End to end** — steady load on a fresh server + aggregator (started once FerretDB was ${extra.ferretSettled ? `idle, after ${extra.ferretSettleSec.toFixed(0)} s` : 'still busy after 120 s'}): agents (frames/s offered / produced)`,
        `${fmt(e2e.agents)} (${fmt(e2e.offered)} / ${fmt(e2e.produced)})`,
        '',
      ],
      ['consumer lag during the probe: largest / at the end', `${fmt(e2e.maxLag)} / ${fmt(e2e.endLag)} messages`, ''],
      [
        `call → visible in \`/api/stats/series?step=1s\`: p50 / p90 / p99 / max over ${d.length} seconds (${e2e.missing} not seen within ${PROBE_TIMEOUT_MS / 1000} s; ${e2e.probeRefused} probe frames refused and sent again)`,
        `${fixed(percentile(d, 50))} / ${fixed(percentile(d, 90))} / ${fixed(percentile(d, 99))} / ${fixed(d.length ? Math.max(...d) : NaN)} ms`,
        d.length >= 30
          ? `p99 ≤ ${fmt(GOAL_E2E_P99_MS)} ms: ${percentile(d, 99) <= GOAL_E2E_P99_MS && e2e.missing === 0 ? 'met' : 'not met'}`
          : `p99 ≤ ${fmt(GOAL_E2E_P99_MS)} ms: too few samples`,
      ],
      [
        `the polling query itself (1 s series of the probe, every ${POLL_MS} ms): median / p99`,
        `${fixed(percentile(e2e.queryMs, 50), 1)} / ${fixed(percentile(e2e.queryMs, 99), 1)} ms`,
        '',
      ],
      [
        'CPU (cores busy) meanwhile: server / aggregator / FerretDB',
        `${fixed(e2e.serverCores, 2)} / ${fixed(e2e.aggregatorCores, 2)} / ${fixed(e2e.ferretCores, 2)}`,
        '',
      ],
    );
  }
  rows.push([
    'machine load when the benchmark started (1-minute load average: other work on the machine)',
    extra.loadBefore.toFixed(2),
    '',
  ]);
  const table = ['| measure | result | goal |', '|---|---|---|', ...rows.map(([m, r, g]) => `| ${m} | ${r} | ${g} |`)].join('\n');
  const cores = machine().split(',')[0];
  const params = `AGENTS=${AGENTS} WORKERS=${WORKERS} APPS=${APPS} SECONDS=${SECONDS} BACKLOG=${BACKLOG}${e2e ? ` E2E_AGENTS=${e2e.agents} E2E_SAMPLES=${E2E_SAMPLES}` : ''}`;
  const lines = [
    '## Statistics through Kafka: ingest, aggregator catch-up, end-to-end delay',
    '',
    `Run ${new Date().toISOString().slice(0, 10)} on ${machine()}, with \`npm run bench:stats-ingest\` (${params}), against the`,
    "local stack (Kafka 4 KRaft, one broker; FerretDB 1.24 on SQLite — not MongoDB's figures). Everything shares the",
    `machine's ${cores} cores: the server, the ${WORKERS} agent processes, the aggregator, Kafka and FerretDB.`,
    '',
    `1. **Ingest**: one server process (\`STATS_AGGREGATOR=off\`), ${fmt(AGENTS)} simulated agents of ${fmt(APPS)} applications, each its own`,
    '   socket.io client and websocket, each sending one `stats` frame a second (5–10 call keys with latency histograms in',
    "   the protocol's buckets), phase-shifted over the second, and keeping it until the server's `stats-ack` (a refused",
    `   frame is sent again after 1 s, as agents do); ${WARMUP_SECONDS} s warm-up, then ${SECONDS} s measured from the agents' counts and the`,
    "   server's `/metrics`.",
    "2. **Aggregator catch-up**: the agents go; the topic holds the ingest's frames, topped up to the backlog with messages",
    "   in the ingest's format produced directly; one aggregator process (`node dist/stats/aggregator-main.js`) starts and",
    `   drains it (at most ${CATCHUP_TIMEOUT_S} s), its progress read from its consumer group's committed offsets every second. Then the`,
    "   sampled applications' series are read from the API, at 1 s and at 1 min resolution, until they equal the calls of",
    '   the frames the agents (and the direct producer) made.',
    '3. **End to end**: a fresh server + aggregator pair (fresh topic and database), under a steady load of agents (by',
    "   default half the catch-up rate just measured), and a probe agent sending, at each second's turn, the frame of the",
    `   second that ended with a call count no other second has; the API's 1 s series is polled every ${POLL_MS} ms and the delay`,
    '   runs from the end of the second the calls were made in to the response that showed them.',
    '',
    table,
    '',
    "Sentinel's dashboard, named in the issue as the peer, keeps 5 minutes of metrics in its own memory and cannot run",
    'here; no peer figures are given.',
  ];
  console.log(`\n${lines.join('\n')}\n`);
  if (WRITE) await writeSection('stats-ingest', lines);
}

exitAfter(main, cleanup);
