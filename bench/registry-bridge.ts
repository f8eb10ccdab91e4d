/**
 * Registry-bridge benchmark: 25,000 Dubbo provider znodes and 25,000 Eureka instances, written by
 * this script into the local stack's real ZooKeeper and Eureka, read by a real Steward server
 * process (STEWARD_MAIN, default dist/main.js).
 *
 *   npm run bench:registry            (stack up and `npm run build` first; ~3 minutes)
 *
 * Measures cold sync, znode→catalog-event and Eureka→catalog-event latency, folder reads during a
 * registration burst next to a per-event re-reading watcher (the way Dubbo's and Curator's child
 * listeners read a provider list), and the server's memory. Writes docs/benchmarks.md's section.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import zookeeper from 'node-zookeeper-client';
import { EurekaTestRegistry } from '../test/support/eureka-registrations.js';
import { freePort } from '../test/support/net.js';
import { machine, percentile, writeSection } from './report.js';
import { stackEnv } from '../test/support/stack.js';
import { ZkClient } from '../test/support/zk.js';
import {
  eurekaInstances,
  host,
  iface,
  PER_SERVICE,
  pool,
  providerName,
  removeZooKeeperRoot,
  seedEureka,
  seedZooKeeper,
} from './registry-seed.js';
import { SERVER_MAIN } from './stats-load.js';

const PROVIDERS = Number(process.env.BENCH_PROVIDERS ?? 25_000);
const EUREKA_INSTANCES = Number(process.env.BENCH_EUREKA_INSTANCES ?? 25_000);
const FETCH_INTERVAL_MS = 5_000;
const run = Date.now().toString(36);
const root = `bench-${run}`;
const TOKEN = `bench-admin-token-${run}-0123456789`;
const auth = { Authorization: `Bearer ${TOKEN}` };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Dubbo's/Curator's way: on every child event, read the whole list again at once. */
function naiveWatcher(connect: string, path: string) {
  const client = zookeeper.createClient(connect, { sessionTimeout: 30_000 });
  const stats = { reads: 0, names: 0 };
  const read = () =>
    client.getChildren(
      path,
      () => read(),
      (error, names) => {
        if (error) return;
        stats.reads += 1;
        stats.names += names.length;
      },
    );
  client.once('connected', read);
  client.connect();
  return { stats, close: () => client.close() };
}

interface SseEvent {
  type: string;
  instance: { host: string; port: number };
}

/** Follows the server's change stream; resolves waiters when an instance with a host appears. */
function followChanges(url: string) {
  const waiters = new Map<string, (at: number) => void>();
  const abort = new AbortController();
  void (async () => {
    const res = await fetch(`${url}/api/registry/changes`, { signal: abort.signal, headers: auth });
    const reader = res.body!.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = /^data: (.*)$/m.exec(event)?.[1];
        if (!data || !event.includes('event: changes')) continue;
        const at = performance.now();
        for (const change of JSON.parse(data) as SseEvent[]) {
          if (change.type !== 'added') continue;
          const key = `${change.instance.host}:${change.instance.port}`;
          waiters.get(key)?.(at);
          waiters.delete(key);
        }
      }
    }
  })();
  return {
    waitFor: (key: string, timeoutMs: number) =>
      new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no event for ${key}`)), timeoutMs);
        waiters.set(key, (at) => {
          clearTimeout(timer);
          resolve(at);
        });
      }),
    close: () => abort.abort(),
  };
}

async function rss(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: Math.round(kb('VmRSS') / 1024), peak: Math.round(kb('VmHWM') / 1024) };
}

async function main(): Promise<void> {
  const zk = await ZkClient.connect(stackEnv.ZOOKEEPER_CONNECT);
  const eureka = new EurekaTestRegistry(stackEnv.EUREKA_URLS);
  const services = Math.ceil(PROVIDERS / PER_SERVICE);
  const results: [string, string, string][] = [];
  let server: ReturnType<typeof spawn> | undefined;
  try {
    // ---- load -------------------------------------------------------------------------------
    let t = performance.now();
    await seedZooKeeper(zk, root, PROVIDERS);
    console.log(`wrote ${PROVIDERS} provider znodes in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    t = performance.now();
    await seedEureka(eureka, eurekaInstances(`BENCH-${run}`, EUREKA_INSTANCES));
    console.log(`registered ${EUREKA_INSTANCES} Eureka instances in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    // ---- cold sync ----------------------------------------------------------------------------
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const started = performance.now();
    server = spawn(process.execPath, [SERVER_MAIN], {
      env: {
        ...process.env,
        ...stackEnv,
        PORT: String(port),
        LOG_LEVEL: 'warn',
        ADMIN_TOKEN: TOKEN,
        ZOOKEEPER_DUBBO_ROOTS: root,
        EUREKA_FETCH_INTERVAL_MS: String(FETCH_INTERVAL_MS),
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    let synced = 0;
    for (;;) {
      try {
        const sources = (await (await fetch(`${url}/api/registry/sources`, { headers: auth })).json()) as {
          source: string;
          registrations: number;
        }[];
        const zkCount = sources.find((s) => s.source.startsWith('zookeeper'))?.registrations ?? 0;
        const eurekaCount = sources.find((s) => s.source === 'eureka')?.registrations ?? 0;
        if (zkCount >= PROVIDERS && eurekaCount >= EUREKA_INSTANCES) {
          synced = performance.now();
          break;
        }
      } catch {
        /* not listening yet */
      }
      if (performance.now() - started > 120_000) throw new Error('cold sync took over 2 minutes');
      await sleep(50);
    }
    const size = (await (await fetch(`${url}/api/registry/instances?pageSize=1`, { headers: auth })).json()) as { total: number };
    results.push([
      'cold sync, server process start → both registries in the catalog',
      `${((synced - started) / 1000).toFixed(2)} s`,
      '≤ 10 s',
    ]);
    results.push(['catalog size after sync', `${size.total} instances`, '']);
    const afterSync = await rss(server.pid!);
    results.push(['server RSS after cold sync (peak so far)', `${afterSync.rss} MiB (${afterSync.peak} MiB)`, '≤ 1024 MiB']);

    // ---- znode created → catalog event ----------------------------------------------------
    const changes = followChanges(url);
    await sleep(300);
    const zkLatencies: number[] = [];
    for (let k = 0; k < 300; k++) {
      const i = PROVIDERS + k;
      const wait = changes.waitFor(`${host(i)}:20880`, 10_000);
      const t0 = performance.now();
      await zk.create(
        `/${root}/${iface(k % services)}/providers/${providerName(k % services, i)}`,
        undefined,
        'persistent',
        false,
      );
      zkLatencies.push((await wait) - t0);
      await sleep(20);
    }
    results.push([
      'znode created → catalog event (SSE), 300 samples: p50 / p99 / max',
      `${percentile(zkLatencies, 50).toFixed(0)} / ${percentile(zkLatencies, 99).toFixed(0)} / ${Math.max(...zkLatencies).toFixed(0)} ms`,
      'p99 ≤ 1000 ms',
    ]);

    // ---- burst: 1,000 providers of one service at once, next to a per-event re-reader ----------
    const burstPath = `/${root}/${iface(0)}/providers`;
    const naive = naiveWatcher(stackEnv.ZOOKEEPER_CONNECT, burstPath);
    await sleep(500);
    const before = (await (await fetch(`${url}/api/registry/sources`, { headers: auth })).json()) as {
      source: string;
      stats?: { childrenReads: number; childrenListed: number };
    }[];
    const ours0 = before.find((s) => s.source.startsWith('zookeeper'))?.stats;
    const naive0 = { ...naive.stats };
    const burst = Array.from({ length: 1_000 }, (_, k) => PROVIDERS + 1_000 + k);
    const burstWaits = burst.map((i) => changes.waitFor(`${host(i)}:20880`, 30_000));
    t = performance.now();
    await pool(burst, 64, (i) => zk.create(`${burstPath}/${providerName(0, i)}`, undefined, 'persistent', false));
    const lastEvent = Math.max(...(await Promise.all(burstWaits)));
    await sleep(1_000);
    const after = (await (await fetch(`${url}/api/registry/sources`, { headers: auth })).json()) as typeof before;
    const ours1 = after.find((s) => s.source.startsWith('zookeeper'))?.stats;
    naive.close();
    results.push([
      'burst of 1,000 registrations on one service: all in the catalog after',
      `${((lastEvent - t) / 1000).toFixed(2)} s`,
      '',
    ]);
    results.push([
      'burst: provider-list reads / names transferred — Steward (coalesced watch)',
      `${(ours1?.childrenReads ?? 0) - (ours0?.childrenReads ?? 0)} / ${(ours1?.childrenListed ?? 0) - (ours0?.childrenListed ?? 0)}`,
      '',
    ]);
    results.push([
      'burst: provider-list reads / names transferred — per-event re-read (Dubbo/Curator child listener)',
      `${naive.stats.reads - naive0.reads} / ${naive.stats.names - naive0.names}`,
      '',
    ]);

    // ---- Eureka change → catalog event --------------------------------------------------------
    const eurekaLatencies: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async (_, k) => {
        await sleep(k * 1_300);
        const i = EUREKA_INSTANCES + 5_000 + k;
        const wait = changes.waitFor(`${host(i)}:8080`, FETCH_INTERVAL_MS + 10_000);
        const t0 = performance.now();
        await eureka.register({
          app: `BENCH-${run}-LATE`.toUpperCase(),
          instanceId: `${host(i)}:late:8080`,
          ip: host(i),
          port: 8080,
        });
        eurekaLatencies.push((await wait) - t0);
      }),
    );
    results.push([
      `Eureka registration → catalog event, fetch interval ${FETCH_INTERVAL_MS / 1000} s, 10 samples: p50 / max`,
      `${percentile(eurekaLatencies, 50).toFixed(0)} / ${Math.max(...eurekaLatencies).toFixed(0)} ms`,
      `≤ ${FETCH_INTERVAL_MS + 1000} ms`,
    ]);
    changes.close();
    const end = await rss(server.pid!);
    results.push(['server RSS at the end (peak)', `${end.rss} MiB (${end.peak} MiB)`, '≤ 1024 MiB']);
  } finally {
    server?.kill('SIGTERM');
    console.log('cleaning up (znodes, Eureka instances)…');
    await eureka.cleanup();
    await removeZooKeeperRoot(zk, root);
    zk.close();
  }

  const table = [
    '| measure | result | target |',
    '|---|---|---|',
    ...results.map(([measure, result, target]) => `| ${measure} | ${result} | ${target} |`),
  ].join('\n');
  console.log(table);
  await writeSection('registry-bridge', [
    '## Registry bridge',
    '',
    `Run ${new Date().toISOString().slice(0, 10)} on ${machine()}, with \`npm run bench:registry\` against the local stack`,
    `(ZooKeeper 3.8.0, Spring Cloud Netflix Eureka server, FerretDB). ${PROVIDERS} provider znodes in ${Math.ceil(PROVIDERS / PER_SERVICE)} services`,
    `× ${PER_SERVICE} providers, ${EUREKA_INSTANCES} Eureka instances in ${Math.ceil(EUREKA_INSTANCES / PER_SERVICE)} applications; one Steward server process.`,
    '',
    table,
    '',
    'The peer in the burst rows is a watcher that re-reads the whole provider list on every child event, as',
    "Dubbo's ZooKeeper registry (Curator child listener) does in every consumer; it ran in the same burst.",
    "The local Eureka keeps 30 s of deltas (the stack's setting; Eureka's default of 3 minutes makes every delta after",
    'a bulk registration of 25,000 instances repeat all of them, which put the Eureka row at 5.2 s / 8.3 s in an earlier run).',
  ]);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
