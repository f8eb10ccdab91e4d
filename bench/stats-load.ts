/**
 * Shared by the statistics benchmarks (bench/stats-ingest.ts, bench/stats-query.ts and their agent
 * worker bench/stats-agents-client.ts): a deterministic, realistic statistics workload built with
 * the protocol's own schema and latency buckets, and the child-process, /proc, Prometheus and
 * Kafka helpers the benchmarks use to watch the server and the aggregator from outside.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type Admin, Kafka, logLevel } from 'kafkajs';
import { MongoClient } from 'mongodb';
import { latencyBucket } from '../src/agent-protocol/latency-histogram.js';
import { type StatsEntry, StatsEntrySchema, StatsSchema } from '../src/agent-protocol/messages.js';
import { freePort } from '../test/support/net.js';
import { stackEnv } from '../test/support/stack.js';
import { timedApi } from './report.js';

/** The built server the benchmarks run: STEWARD_MAIN (a build of one's own, e.g. `tsc --outDir`), default dist/main.js. */
export const SERVER_MAIN = resolve(process.env.STEWARD_MAIN ?? fileURLToPath(new URL('../dist/main.js', import.meta.url)));
export const AGGREGATOR_MAIN = join(dirname(SERVER_MAIN), 'stats', 'aggregator-main.js');

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const wallNow = () => performance.timeOrigin + performance.now();
export const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
export const fixed = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '—');

/** A new agent process id (`hello.run`): 16 characters of A-Z a-z 0-9 _ -. */
export const newRun = () => randomBytes(12).toString('base64url');

/** A number ≥ 0 from the environment variable `name`, `fallback` when it is not set. */
export function envNumber(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number ≥ 0`);
  return value;
}

/** For progress lines: true once `ms` have passed since it was last true (or made), false until then. */
export function every(ms: number): () => boolean {
  let last = performance.now();
  return () => {
    if (performance.now() - last <= ms) return false;
    last = performance.now();
    return true;
  };
}

// ---- the workload ------------------------------------------------------------------------------

/** Small, fast, seeded PRNG (mulberry32): the workload is the same for the same seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export type EntryKey = Pick<StatsEntry, 'direction' | 'peer' | 'protocol' | 'resource'>;
export type EntryBody = Omit<StatsEntry, keyof EntryKey>;

export const appName = (prefix: string, index: number) => `${prefix}-${index}`;

const NOUNS = [
  'orders',
  'items',
  'users',
  'carts',
  'stock',
  'prices',
  'payments',
  'invoices',
  'shipments',
  'reviews',
  'coupons',
  'accounts',
];
const VERBS = ['get', 'list', 'create', 'update', 'reserve', 'cancel'];
const HTTP = [
  (n: string) => `GET /api/${n}/{id}`,
  (n: string) => `GET /api/${n}`,
  (n: string) => `POST /api/${n}`,
  (n: string) => `PUT /api/${n}/{id}`,
  (n: string) => `GET /api/${n}/{id}/history`,
  (n: string) => `DELETE /api/${n}/{id}`,
];

/** An application's resources (HTTP for two apps in three, Dubbo for the third), 12 of them. */
export function appResources(app: number): { protocol: 'http' | 'dubbo'; resource: string }[] {
  const dubbo = app % 3 === 2;
  const out: { protocol: 'http' | 'dubbo'; resource: string }[] = [];
  for (let r = 0; r < 12; r++) {
    const noun = NOUNS[(app + r) % NOUNS.length]!;
    if (dubbo) {
      const iface = `com.example.${noun}.${noun[0]!.toUpperCase()}${noun.slice(1)}Service`;
      out.push({ protocol: 'dubbo', resource: `${iface}#${VERBS[r % VERBS.length]}${r >= VERBS.length ? 'All' : ''}` });
    } else {
      out.push({ protocol: 'http', resource: HTTP[r % HTTP.length]!(r >= HTTP.length ? `${noun}-admin` : noun) });
    }
  }
  return out;
}

/**
 * The call keys one instance of application `app` reports every second: `count` entries (5–10 by
 * default), inbound on the application's own resources from a few callers (or an unknown one), and
 * one to three outbound keys to callee applications' resources.
 */
export function instanceKeys(prefix: string, app: number, apps: number, seed: number, count?: number): EntryKey[] {
  const rnd = prng(seed);
  const n = count ?? 5 + Math.floor(rnd() * 6);
  const outbound = apps > 1 ? Math.min(n - 1, 1 + Math.floor(rnd() * 3)) : 0;
  const own = appResources(app);
  const keys = new Map<string, EntryKey>();
  for (let attempt = 0; keys.size < n - outbound && attempt < 100; attempt++) {
    const { protocol, resource } = own[Math.floor(rnd() * own.length)]!;
    const callerIndex = Math.floor(rnd() * 4);
    const peer = callerIndex === 3 || apps === 1 ? '' : appName(prefix, (app + apps - 1 - callerIndex) % apps);
    keys.set(`in ${peer} ${resource}`, { direction: 'inbound', peer, protocol, resource });
  }
  for (let attempt = 0; keys.size < n && attempt < 100; attempt++) {
    const callee = (app + 1 + Math.floor(rnd() * Math.min(apps - 1, 5))) % apps;
    const theirs = appResources(callee);
    const { protocol, resource } = theirs[Math.floor(rnd() * theirs.length)]!;
    const peer = appName(prefix, callee);
    keys.set(`out ${peer} ${resource}`, { direction: 'outbound', peer, protocol, resource });
  }
  return [...keys.values()];
}

function gaussian(rnd: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
}

/**
 * One second of one call key, from `calls` latencies drawn from a log-normal distribution: the
 * counters add up as the protocol says (calls = successes + errors + limited), the histogram is
 * the real buckets of `latency-histogram.ts`, and it validates against `StatsEntrySchema`.
 */
export function entryBody(rnd: () => number): EntryBody {
  const r = rnd();
  const calls = r < 0.6 ? 1 + Math.floor(rnd() * 20) : r < 0.9 ? 20 + Math.floor(rnd() * 80) : 100 + Math.floor(rnd() * 300);
  const limited = rnd() < 0.05 ? Math.max(1, Math.floor(calls * 0.03)) : 0;
  const completed = calls - limited;
  const median = [2, 5, 12, 30, 80, 200][Math.floor(rnd() * 6)]!;
  const sigma = 0.5 + rnd() * 0.5;
  const errorRate = [0, 0, 0, 0.001, 0.01, 0.05][Math.floor(rnd() * 6)]!;
  const buckets = new Map<number, number>();
  let sum = 0;
  let max = 0;
  let slow = 0;
  for (let i = 0; i < completed; i++) {
    const ms = Math.max(0, Math.round(median * Math.exp(sigma * gaussian(rnd))));
    const b = latencyBucket(ms);
    buckets.set(b, (buckets.get(b) ?? 0) + 1);
    sum += ms;
    if (ms > max) max = ms;
    if (ms >= 1_000) slow += 1;
  }
  const expected = completed * errorRate;
  const errors = Math.min(completed, Math.floor(expected) + (rnd() < expected - Math.floor(expected) ? 1 : 0));
  return {
    calls,
    successes: completed - errors,
    errors,
    limited,
    broken: 0,
    degraded: 0,
    slow,
    latencySumMs: sum,
    latencyMaxMs: max,
    histogram: [...buckets.entries()].sort((a, b) => a[0] - b[0]),
  };
}

/** A pool of entry bodies drawn once (drawing latencies for every frame would cost more than sending it). */
export function bodyPool(size: number, seed: number): EntryBody[] {
  const rnd = prng(seed);
  return Array.from({ length: size }, () => entryBody(rnd));
}

export type StatsFrame = ReturnType<typeof StatsSchema.parse>;

/** A stats frame for `second` from an instance's keys, each with a body from the pool; and the calls it carries. */
export function statsFrame(
  seq: number,
  second: number,
  keys: readonly EntryKey[],
  pool: readonly EntryBody[],
  rnd: () => number,
) {
  let calls = 0;
  const entries = keys.map((key) => {
    const body = pool[Math.floor(rnd() * pool.length)]!;
    calls += body.calls;
    return { ...key, ...body };
  });
  const frame: StatsFrame = { type: 'stats', seq, second, dropped: 0, entries };
  return { frame, calls };
}

/** Throws unless the workload is valid protocol: every key with every body, and a whole frame. */
export function checkWorkload(keys: readonly EntryKey[], pool: readonly EntryBody[]): void {
  for (const body of pool) StatsEntrySchema.parse({ ...keys[0], ...body });
  for (const key of keys) StatsEntrySchema.parse({ ...key, ...pool[0] });
  StatsSchema.parse(statsFrame(1, Math.floor(Date.now() / 1_000), keys, pool, prng(1)).frame);
}

/** A message of the stats topic as the server's ingest writes it (docs/stats.md "The Kafka message"). */
export function kafkaMessage(application: string, instanceId: string, run: string, frame: StatsFrame) {
  return { key: application, value: JSON.stringify({ v: 1, application, instanceId, run, receivedAt: Date.now(), frame }) };
}

/** An instance of application `app` (named by `appName`) whose frames go to the topic directly. */
export interface FillInstance {
  app: number;
  instanceId: string;
  run: string;
  keys: readonly EntryKey[];
}

/**
 * The messages (for `produceAll`) of `count` stats frames of `instances`, as their agents would have
 * sent them: second by second from `firstSecond`, every instance in turn, `seq` counting the seconds
 * from 1. `onFrame` sees each frame made, with its instance and calls.
 */
export function fillMessages(
  prefix: string,
  instances: readonly FillInstance[],
  count: number,
  firstSecond: number,
  pool: readonly EntryBody[],
  rnd: () => number,
  onFrame: (instance: FillInstance, frame: StatsFrame, calls: number) => void,
): () => { key: string; value: string } | undefined {
  let made = 0;
  return () => {
    if (made >= count) return undefined;
    const s = Math.floor(made / instances.length);
    const instance = instances[made % instances.length]!;
    made += 1;
    const { frame, calls } = statsFrame(s + 1, firstSecond + s, instance.keys, pool, rnd);
    onFrame(instance, frame, calls);
    return kafkaMessage(appName(prefix, instance.app), instance.instanceId, instance.run, frame);
  };
}

// ---- processes ---------------------------------------------------------------------------------

const children = new Set<ChildProcess>();
const stoppedByUs = new WeakSet<ChildProcess>();
/**
 * Set when a process using the run's database ended other than by a graceful stop (crashed, or
 * killed): FerretDB may still be running its last operation, and dropping a database under a
 * running operation crashes FerretDB 1.24 (SIGBUS in SQLite, seen with this benchmark). The run's
 * databases are then kept.
 */
let unclean = false;

export function killChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      stoppedByUs.add(child);
      child.kill('SIGKILL');
    }
  }
}

/**
 * Starts `node …args` with the soft fd limit raised to the hard one (each agent socket is a
 * descriptor on each side). stdout is piped only when `onLine` is given (one call per line).
 * `database`: the process uses the run's database (see `unclean`).
 */
export function startChild(
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { ipc?: boolean; onLine?: (line: string) => void; database?: boolean } = {},
): ChildProcess {
  const child = spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, ...args], {
    env,
    stdio: ['ignore', options.onLine ? 'pipe' : 'ignore', 'inherit', ...(options.ipc ? (['ipc'] as const) : [])],
  });
  children.add(child);
  child.once('exit', (code, signal) => {
    children.delete(child);
    if (options.database && (!stoppedByUs.has(child) || signal === 'SIGKILL' || (code !== 0 && code !== null))) unclean = true;
  });
  if (options.onLine && child.stdout) createInterface({ input: child.stdout }).on('line', options.onLine);
  return child;
}

/** SIGTERM, then SIGKILL if it has not exited within `ms`. */
export async function stopChild(child: ChildProcess, ms = 20_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  stoppedByUs.add(child);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(ms)]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited;
  }
}

/** Every process this benchmark started, stopped gracefully (SIGKILL after 20 s). */
export async function stopChildren(): Promise<void> {
  await Promise.all([...children].map((child) => stopChild(child)));
}

/**
 * The run's cleanup: every process stopped gracefully, then the run's topics and databases deleted
 * (KEEP_DATA=1 keeps them) and `also` run (whatever else the run made), once whoever asks first;
 * SIGINT and SIGTERM clean up and exit (130, 143). `stopping` is called at every request first (from
 * then on a process' exit is expected).
 */
export function runCleanup(
  topics: string[],
  databases: string[],
  stopping: () => void,
  also?: () => Promise<void>,
): () => Promise<void> {
  let cleaning: Promise<void> | undefined;
  const cleanup = () => {
    stopping();
    cleaning ??= (async () => {
      if (process.env.KEEP_DATA === '1') {
        await stopChildren();
        console.log(`kept: topics ${topics.join(', ')}; databases ${databases.join(', ')}`);
      } else await dropRunData(topics, databases);
      await also?.().catch((error: unknown) => console.error('cleanup failed:', error));
    })();
    return cleaning;
  };
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => void cleanup().finally(() => process.exit(code)));
  }
  return cleanup;
}

/** Runs a benchmark's `main`: exit 0 after it, or 1 after `cleanup` if it failed. */
export function exitAfter(main: () => Promise<void>, cleanup: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    async (error: unknown) => {
      console.error(error);
      await cleanup();
      process.exit(1);
    },
  );
}

export async function waitForHttp(url: string, child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the process serving ${url} exited`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** A Steward server process of the run (and its REST API with the admin token). */
export interface StatsServer {
  child: ChildProcess;
  pid: number;
  url: string;
  api: ReturnType<typeof timedApi>;
}

/**
 * Starts a Steward server process on the run's `topic` and database `db`, with `STATS_AGGREGATOR=off`
 * (the aggregator runs in a process of its own) and `env` on top; resolves once it answers.
 * `name`: its first 20 warnings and errors go to stderr under that name.
 */
export async function startStatsServer(
  topic: string,
  db: string,
  adminToken: string,
  env: NodeJS.ProcessEnv = {},
  name = 'server',
): Promise<StatsServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = startChild(
    [SERVER_MAIN],
    {
      ...process.env,
      ...stackEnv,
      MONGODB_URI: mongoUri(db),
      PORT: String(port),
      ADMIN_TOKEN: adminToken,
      LOG_LEVEL: 'warn',
      STATS_TOPIC: topic,
      STATS_AGGREGATOR: 'off',
      ...env,
    },
    { database: true, onLine: printWarnings(name) },
  );
  await waitForHttp(`${url}/livez`, child);
  return { child, pid: child.pid!, url, api: timedApi(url, adminToken) };
}

/**
 * Starts an aggregator process on the run's `topic` and database `db`: its log lines go to
 * AGGREGATOR_LOG (see `aggregatorLog`), its first 20 warnings and errors to stderr, and each to
 * `onEntry`; its exit is reported unless `stopping()`.
 */
export function startAggregatorProcess(
  topic: string,
  db: string,
  stopping: () => boolean,
  onEntry?: (entry: PinoEntry) => void,
): ChildProcess {
  const warn = printWarnings('aggregator');
  const log = aggregatorLog();
  const child = startChild(
    [AGGREGATOR_MAIN],
    { ...process.env, ...stackEnv, MONGODB_URI: mongoUri(db), STATS_TOPIC: topic, LOG_LEVEL: 'info' },
    {
      database: true,
      onLine: (line) => {
        log(line);
        const entry = warn(line);
        if (entry) onEntry?.(entry);
      },
    },
  );
  child.once('exit', (code, signal) => {
    if (!stopping()) console.error(`the aggregator exited (${code ?? signal})`);
  });
  return child;
}

/** Current and peak resident memory of a process, MiB. */
export async function memory(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** User + system CPU time of a process (all its threads), ms (clock ticks of 10 ms on Linux); NaN when gone. */
export async function cpuMs(pid: number | undefined): Promise<number> {
  if (pid === undefined) return NaN;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/** The pid of a local-stack service (`mongodb` = FerretDB), from the stack's pid file. */
export async function stackPid(name: 'kafka' | 'mongodb' | 'zookeeper' | 'eureka'): Promise<number | undefined> {
  const dir = process.env.STACK_DIR ?? fileURLToPath(new URL('../.stack', import.meta.url));
  try {
    const { pid } = JSON.parse(await readFile(join(dir, 'run', `${name}.json`), 'utf8')) as { pid: number };
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/** Tracks a process' peak RSS by sampling (VmHWM is the process' lifetime peak, not the phase's). */
export class RssSampler {
  max = 0;
  last = 0;
  private timer?: NodeJS.Timeout;
  constructor(readonly pid: number | undefined) {}
  start(everyMs = 1_000): this {
    const sample = () => {
      if (this.pid === undefined) return;
      memory(this.pid).then(
        (m) => {
          this.last = m.rss;
          this.max = Math.max(this.max, m.rss);
        },
        () => undefined,
      );
    };
    sample();
    this.timer = setInterval(sample, everyMs);
    return this;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

// ---- Prometheus --------------------------------------------------------------------------------

/** Sum of a metric's samples whose labels include `labels` (e.g. `outcome="produced"`); 0 when absent. */
export function metricSum(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels && !rest.includes(labels)) continue;
    sum += Number(rest.slice(rest.lastIndexOf(' ') + 1));
  }
  return sum;
}

export async function metrics(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

// ---- Kafka and MongoDB -------------------------------------------------------------------------

export const BROKERS = stackEnv.KAFKA_BROKERS.split(',');

export function kafkaClient(clientId: string): Kafka {
  return new Kafka({ clientId, brokers: BROKERS, logLevel: logLevel.NOTHING });
}

/** A database of its own for a run: the stack's MONGODB_URI with another database name. */
export const mongoUri = (db: string) => stackEnv.MONGODB_URI.replace(/\/[^/]*$/, `/${db}`);

/** Messages on the topic (sum of the partitions' end offsets; the topic is new, so it starts at 0). */
export async function topicEnd(admin: Admin, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((sum, p) => sum + Number(p.high), 0);
}

export async function topicExists(admin: Admin, topic: string): Promise<boolean> {
  return (await admin.listTopics()).includes(topic);
}

/**
 * The aggregator's progress as Kafka sees it: the offsets its consumer group committed on the
 * topic. The group is found by name (docs/stats.md: `steward-stats-aggregator.<topic>` for a
 * topic other than the default), so a change of the naming scheme is still found.
 */
export class GroupProgress {
  groupId?: string;
  constructor(
    private readonly admin: Admin,
    private readonly topic: string,
  ) {}

  async committed(): Promise<number> {
    if (!this.groupId) {
      const { groups } = await this.admin.listGroups();
      this.groupId = groups.find((g) => g.groupId.endsWith(this.topic))?.groupId;
      if (!this.groupId) return 0;
    }
    const [entry] = await this.admin.fetchOffsets({ groupId: this.groupId, topics: [this.topic] });
    return (entry?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  }
}

/** The consumer group's lag on the topic (end offsets − committed offsets), sampled every 2 s until stopped. */
export class LagSampler {
  max = 0;
  last = 0;
  private running = true;
  private readonly loop: Promise<void>;

  constructor(admin: Admin, topic: string, progress = new GroupProgress(admin, topic)) {
    this.loop = (async () => {
      while (this.running) {
        try {
          const [end, committed] = await Promise.all([topicEnd(admin, topic), progress.committed()]);
          this.last = end - committed;
          this.max = Math.max(this.max, this.last);
        } catch {
          // a sample Kafka did not answer is skipped
        }
        await sleep(2_000);
      }
    })();
  }

  stop(): Promise<void> {
    this.running = false;
    return this.loop;
  }
}

/**
 * Waits until FerretDB has used less than 5 % of a core for 5 s in a row (so it runs no operation
 * of ours any more), at most `maxMs`; false if it did not.
 */
export async function ferretIdle(maxMs = 600_000): Promise<boolean> {
  const pid = await stackPid('mongodb');
  if (pid === undefined) return false;
  const deadline = Date.now() + maxMs;
  let quiet = 0;
  let last = await cpuMs(pid);
  while (Date.now() < deadline) {
    await sleep(1_000);
    const now = await cpuMs(pid);
    quiet = now - last < 50 ? quiet + 1 : 0;
    last = now;
    if (quiet >= 5) return true;
  }
  return false;
}

/**
 * Deletes a run's topics and databases (best effort), once every process is stopped. Databases
 * only when every process that used them stopped gracefully, or else FerretDB went idle (see `unclean`).
 */
export async function dropRunData(topics: string[], databases: string[]): Promise<void> {
  await stopChildren();
  const admin = kafkaClient('bench-stats-cleanup').admin();
  try {
    await admin.connect();
    const existing = new Set(await admin.listTopics());
    const ours = topics.filter((t) => existing.has(t));
    if (ours.length > 0) await admin.deleteTopics({ topics: ours, timeout: 30_000 });
  } catch (error) {
    console.error('deleting the topics failed:', error);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  if (unclean && !(await ferretIdle())) {
    console.error(
      `kept the databases ${databases.join(', ')}: a process using them did not stop gracefully and FerretDB did not go ` +
        'idle, and dropping a database under a running operation crashes FerretDB. Drop them later: ' +
        databases.map((db) => `mongosh ${mongoUri(db)} --eval 'db.dropDatabase()'`).join('; '),
    );
    return;
  }
  await sleep(3_000);
  for (const db of databases) {
    const mongo = new MongoClient(mongoUri(db), { serverSelectionTimeoutMS: 5_000 });
    try {
      await mongo.db().dropDatabase();
    } catch (error) {
      console.error(`dropping ${db} failed:`, error);
    } finally {
      await mongo.close();
    }
  }
}

/**
 * Produces messages as fast as the broker takes them: batches of up to `batch` messages and
 * `maxBytes` (below the broker's 1 MiB message-batch limit, whatever partition the keys pick),
 * `parallel` requests in flight (ordering within an application does not matter to the
 * aggregator: frames are keyed).
 */
export async function produceAll(
  kafka: Kafka,
  topic: string,
  next: () => { key: string; value: string } | undefined,
  options: { batch?: number; maxBytes?: number; parallel?: number; onProgress?: (sent: number) => void } = {},
): Promise<number> {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const batchSize = options.batch ?? 1_000;
  const maxBytes = options.maxBytes ?? 900_000;
  let sent = 0;
  let done = false;
  let carried: { key: string; value: string } | undefined;
  const lane = async () => {
    while (!done || carried) {
      const messages: { key: string; value: string }[] = [];
      let bytes = 0;
      while (messages.length < batchSize) {
        const m = carried ?? (done ? undefined : next());
        carried = undefined;
        if (!m) {
          done = true;
          break;
        }
        if (messages.length > 0 && bytes + m.value.length > maxBytes) {
          carried = m;
          break;
        }
        messages.push(m);
        bytes += m.value.length + m.key.length;
      }
      if (messages.length === 0) return;
      await producer.send({ topic, acks: -1, messages });
      sent += messages.length;
      options.onProgress?.(sent);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.parallel ?? 4 }, lane));
  } finally {
    await producer.disconnect();
  }
  return sent;
}

/** With AGGREGATOR_LOG=<file>, every stdout line of the aggregator process is appended there (to see what it did). */
export function aggregatorLog(): (line: string) => void {
  const path = process.env.AGGREGATOR_LOG;
  if (!path) return () => undefined;
  const out = createWriteStream(path, { flags: 'a' });
  return (line) => void out.write(`${line}\n`);
}

export interface PinoEntry {
  level?: number;
  msg?: string;
  [key: string]: unknown;
}

/** A reader of a process' pino lines: prints its first `max` warnings and errors to stderr; returns each line's entry. */
export function printWarnings(name: string, max = 20): (line: string) => PinoEntry | undefined {
  let warnings = 0;
  return (line) => {
    const entry = pinoLine(line);
    if ((entry?.level ?? 0) >= 40 && warnings++ < max) console.error(`[${name}] ${line.slice(0, 600)}`);
    return entry;
  };
}

/** One stdout line of a pino logger, if it is one. */
export function pinoLine(line: string): PinoEntry | undefined {
  try {
    const value = JSON.parse(line) as unknown;
    return value && typeof value === 'object' ? (value as PinoEntry) : undefined;
  } catch {
    return undefined;
  }
}
