import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { EurekaHttpClient, EurekaInstanceUnknownError } from '../../src/registry-bridge/eureka/eureka-http.js';
import {
  EurekaSource,
  type EurekaSourceOptions,
  type EurekaSourceStats,
} from '../../src/registry-bridge/eureka/eureka.source.js';
import { EurekaProxy } from '../support/eureka-proxy.js';
import { EurekaTestRegistry, uniqueAppName, type TestInstance } from '../support/eureka-registrations.js';
import { RecordingLogger, RecordingSink, type SinkEvent } from '../support/eureka-sink.js';
import { freePort, SilentServer } from '../support/net.js';
import { stackEnv } from '../support/stack.js';

const EUREKA = stackEnv.EUREKA_URLS.split(',')[0] as string;
const registry = new EurekaTestRegistry(EUREKA);
afterAll(() => registry.cleanup());

/** Sources and servers a test made, stopped after it even when it fails. */
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function source(options: Partial<EurekaSourceOptions> & { urls: string[] }): {
  source: EurekaSource;
  sink: RecordingSink;
  logger: RecordingLogger;
} {
  const logger = new RecordingLogger();
  const made = new EurekaSource({ fetchIntervalMs: 500, requestTimeoutMs: 2_000, logger, ...options });
  cleanups.push(() => made.stop());
  return { source: made, sink: new RecordingSink(), logger };
}

async function proxy(): Promise<EurekaProxy> {
  const made = await new EurekaProxy(EUREKA).start();
  cleanups.push(() => made.stop());
  return made;
}

function instance(app: string, n: number, extra: Partial<TestInstance> = {}): TestInstance {
  return { app, instanceId: `10.9.0.${n}:${app.toLowerCase()}:8080`, ip: `10.9.0.${n}`, port: 8080, ...extra };
}

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('EurekaSource against the real Eureka server', () => {
  it('hands the full registry over at start, instances read as registrations', async () => {
    const app = uniqueAppName('it-full');
    await registry.register(instance(app, 1, { metadata: { weight: '40', zone: 'a' } }));
    await registry.register(instance(app, 2, { status: 'DOWN' }));
    const { source: eureka, sink } = source({ urls: [EUREKA] });

    await eureka.start(sink);

    expect(sink.events.map((e) => e.type)).toEqual(['replaceAll', 'sourceHealth']);
    expect(sink.of('sourceHealth')[0]?.health).toEqual({ reachable: true });
    const mine = [...sink.current.values()]
      .filter((r) => r.application === app.toLowerCase())
      .sort((a, b) => a.host.localeCompare(b.host));
    expect(mine).toEqual([
      expect.objectContaining({
        key: `${app}/10.9.0.1:${app.toLowerCase()}:8080`,
        source: 'eureka',
        sourceKind: 'eureka',
        kind: 'http',
        host: '10.9.0.1',
        port: 8080,
        status: 'UP',
        weight: 40,
        services: [],
        timestamp: expect.any(Number) as number,
        metadata: expect.objectContaining({
          zone: 'a',
          vipAddress: app.toLowerCase(),
          dataCenter: 'MyOwn',
          secure: 'false',
        }) as object,
      }),
      expect.objectContaining({ host: '10.9.0.2', status: 'DOWN', weight: 100 }),
    ]);
    expect(eureka.stats).toMatchObject({ fullFetches: 1, deltaFetches: 0 });
  });

  it('an added instance, a status override and its removal, and a cancel arrive through deltas', async () => {
    const interval = 5_000;
    const app = uniqueAppName('it-delta');
    await registry.register(instance(app, 1));
    const { source: eureka, sink } = source({ urls: [EUREKA], fetchIntervalMs: interval });
    await eureka.start(sink);
    const measured: Record<string, number> = {};

    /** Makes a change and waits for the sink event it causes; records how long it took. */
    async function arrives(
      what: string,
      change: () => Promise<void>,
      arrived: (from: number) => Promise<SinkEvent>,
    ): Promise<void> {
      const from = sink.events.length;
      const deltas = eureka.stats.deltaFetches;
      await change();
      const changed = Date.now();
      const event = await arrived(from);
      measured[what] = event.at - changed;
      // Changes are made right after a fetch: the very next delta must carry them.
      expect(eureka.stats.deltaFetches - deltas).toBe(1);
    }
    const within = { timeoutMs: interval + 1_000 };

    const added = instance(app, 2);
    const addedKey = `${app}/${added.instanceId}`;
    await arrives(
      'added',
      () => registry.register(added),
      (from) => sink.next('upsert', (e) => e.registration.key === addedKey, { from, ...within }),
    );
    expect(sink.current.get(addedKey)).toMatchObject({ status: 'UP', host: '10.9.0.2' });

    await arrives(
      'overridden OUT_OF_SERVICE',
      () => eureka.client.overrideStatus(app, added.instanceId, 'OUT_OF_SERVICE'),
      (from) =>
        sink.next('upsert', (e) => e.registration.key === addedKey && e.registration.status === 'OUT_OF_SERVICE', {
          from,
          ...within,
        }),
    );
    expect(sink.current.get(addedKey)?.metadata['overriddenStatus']).toBe('OUT_OF_SERVICE');

    await arrives(
      'override removed',
      () => eureka.client.removeStatusOverride(app.toLowerCase(), added.instanceId),
      (from) =>
        sink.next('upsert', (e) => e.registration.key === addedKey && e.registration.status === 'UP', { from, ...within }),
    );

    await arrives(
      'cancelled',
      () => registry.cancel(app, added.instanceId),
      (from) => sink.next('remove', (e) => e.key === addedKey, { from, ...within }),
    );
    expect(sink.current.has(addedKey)).toBe(false);
    expect(sink.current.has(`${app}/10.9.0.1:${app.toLowerCase()}:8080`)).toBe(true);

    // Every change came through a delta that reconciled: no second full fetch, nothing sent twice.
    expect(eureka.stats).toMatchObject({ fullFetches: 1, hashMismatches: 0, failedFetches: 0 });
    expect(sink.of('upsert').filter((e) => e.registration.key === addedKey)).toHaveLength(3);
    console.log(`[eureka] delta propagation with fetchIntervalMs=${interval}: ${JSON.stringify(measured)} ms`);
  });

  it('a control on an instance Eureka does not know fails as unknown, naming it', async () => {
    const client = new EurekaHttpClient({ urls: [EUREKA] });
    const app = uniqueAppName('it-nobody');
    await expect(client.overrideStatus(app, 'no-such-id', 'OUT_OF_SERVICE')).rejects.toThrow(EurekaInstanceUnknownError);
    await expect(client.removeStatusOverride(app, 'no-such-id')).rejects.toThrow(new RegExp(`${app}/no-such-id.*404`));
    // Unknown to the peer that answered, whatever the others did.
    const dead = `http://127.0.0.1:${await freePort()}/eureka`;
    await expect(new EurekaHttpClient({ urls: [dead, EUREKA] }).overrideStatus(app, 'no-such-id', 'DOWN')).rejects.toThrow(
      EurekaInstanceUnknownError,
    );
  });

  it('fetches the full registry when a delta leaves the local copy out of sync with the hash code', async () => {
    const app = uniqueAppName('it-hash');
    const tamper = await proxy();
    tamper.mode = 'drop-delta';
    tamper.dropApp = app;
    const { source: eureka, sink, logger } = source({ urls: [tamper.url] });
    await eureka.start(sink);
    const from = sink.events.length;

    const hidden = instance(app, 1);
    await registry.register(hidden);

    // The delta never shows the instance, but the hash code counts it: only a full fetch brings it.
    const key = `${app}/${hidden.instanceId}`;
    await sink.next('replaceAll', (e) => e.registrations.some((r) => r.key === key), { from });
    expect(sink.of('upsert', from).some((e) => e.registration.key === key)).toBe(false);
    expect(eureka.stats.hashMismatches).toBeGreaterThanOrEqual(1);
    expect(eureka.stats.fullFetches).toBeGreaterThanOrEqual(2);
    expect(logger.lines).toContainEqual(
      expect.objectContaining({ level: 'info', message: expect.stringMatching(/does not reconcile/) as string }),
    );

    // In sync again, later deltas reconcile and do not fetch everything again.
    const settled = eureka.stats.fullFetches;
    await sleep(1_500);
    expect(eureka.stats.fullFetches).toBe(settled);
  });
});

describe('EurekaSource failover and outages', () => {
  it('fails over from a closed port to the next URL and prefers that one afterwards', async () => {
    const dead = `http://127.0.0.1:${await freePort()}/eureka`;
    const { source: eureka, sink, logger } = source({ urls: [dead, EUREKA] });
    await eureka.start(sink);
    expect(sink.of('replaceAll')).toHaveLength(1);
    expect(sink.of('sourceHealth').map((e) => e.health)).toEqual([{ reachable: true }]);
    expect(eureka.client.preferredUrl).toBe(EUREKA);
    expect(logger.lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        details: expect.objectContaining({ failed: [expect.stringContaining(`${dead}/apps: `)] }) as object,
      }),
    );
  });

  it('fails over from a URL that answers HTML, naming it, and does not go back to it', async () => {
    const html = await proxy();
    html.mode = 'html';
    await expect(new EurekaHttpClient({ urls: [html.url] }).fetchApps()).rejects.toThrow(new RegExp(`${html.url}/apps: .*HTML`));
    html.requests = 0;

    const { source: eureka, sink } = source({ urls: [html.url, EUREKA] });
    await eureka.start(sink);
    expect(sink.of('replaceAll')).toHaveLength(1);
    expect(html.requests).toBe(1);
    await sleep(1_500);
    expect(eureka.stats.deltaFetches).toBeGreaterThanOrEqual(2);
    expect(html.requests).toBe(1);
    expect(sink.of('sourceHealth').map((e) => e.health.reachable)).toEqual([true]);
  });

  it('gives up on a URL that hangs after the request timeout and fails over', async () => {
    const hung = await new SilentServer().start();
    cleanups.push(() => hung.stop());
    const { source: eureka, sink } = source({ urls: [`http://127.0.0.1:${hung.port}/eureka`, EUREKA], requestTimeoutMs: 500 });
    const started = Date.now();
    await eureka.start(sink);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(sink.of('replaceAll')).toHaveLength(1);
    expect(hung.accepted()).toBeGreaterThanOrEqual(1);
  });

  it('starts with every URL down without throwing, reports it, and keeps trying', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const { source: eureka, sink } = source({ urls: [`http://127.0.0.1:${a}/eureka`, `http://127.0.0.1:${b}/eureka`] });
    await expect(eureka.start(sink)).resolves.toBeUndefined();
    const health = sink.of('sourceHealth');
    expect(health).toHaveLength(1);
    expect(health[0]?.health.reachable).toBe(false);
    expect(health[0]?.health.error).toMatch(new RegExp(`:${a}/eureka/apps: .*ECONNREFUSED.*:${b}/eureka/apps: .*ECONNREFUSED`));
    await sleep(1_600);
    expect(eureka.stats.failedFetches).toBeGreaterThanOrEqual(3);
    // Told once, not at every attempt; nothing replaced or removed.
    expect(sink.events.map((e) => e.type)).toEqual(['sourceHealth']);
  });

  it('keeps its entries while Eureka is unreachable, then fetches everything again', async () => {
    const app = uniqueAppName('it-outage');
    const kept = instance(app, 1);
    await registry.register(kept);
    const peer = await proxy();
    const { source: eureka, sink, logger } = source({ urls: [peer.url] });
    await eureka.start(sink);
    const key = `${app}/${kept.instanceId}`;
    expect(sink.current.has(key)).toBe(true);

    peer.mode = 'refuse';
    const down = await sink.next('sourceHealth', (e) => !e.health.reachable);
    expect(down.health.error).toContain(`${peer.url}/apps/delta`);
    const afterDown = sink.events.length;
    const requests = peer.requests;
    await sleep(1_600);
    expect(peer.requests).toBeGreaterThan(requests); // still trying
    expect(sink.events.length).toBe(afterDown); // no removal, no replacement, no repeated health
    expect(sink.current.has(key)).toBe(true);

    // While it was away the instance changed: the full fetch on return brings the change.
    await registry.register(instance(app, 2));
    peer.mode = 'pass';
    await sink.next('sourceHealth', (e) => e.health.reachable, { from: afterDown });
    expect(sink.events.slice(afterDown).map((e) => e.type)).toEqual(['replaceAll', 'sourceHealth']);
    expect(sink.current.has(`${app}/10.9.0.2:${app.toLowerCase()}:8080`)).toBe(true);
    expect(logger.lines.map((l) => `${l.level} ${l.message}`)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^warn Eureka unreachable/), 'info Eureka reachable again']),
    );
  });
});

describe('EurekaSource stop', () => {
  it('leaves no timer behind: a process running a source exits by itself after stop()', async () => {
    const script = fileURLToPath(new URL('../support/eureka-stop-child.ts', import.meta.url));
    const started = Date.now();
    const { stdout } = await run(process.execPath, ['--import', 'tsx', script, EUREKA], { timeout: 20_000 });
    const report = JSON.parse(stdout.trim()) as { stats: EurekaSourceStats; resources: string[] };
    console.log(
      `[eureka] child exited ${Date.now() - started} ms after start; alive after stop(): ${report.resources.join(', ')}`,
    );
    expect(report.stats.deltaFetches).toBeGreaterThanOrEqual(2);
    expect(report.resources).not.toContain('Timeout');
  });

  it('makes no request and no sink call after stop()', async () => {
    const peer = await proxy();
    const { source: eureka, sink } = source({ urls: [peer.url], fetchIntervalMs: 100 });
    await eureka.start(sink);
    await sleep(400);
    await eureka.stop();
    const requests = peer.requests;
    const events = sink.events.length;
    await sleep(500);
    expect(peer.requests).toBe(requests);
    expect(sink.events.length).toBe(events);
  });

  it('aborts and awaits a fetch in flight, and tells the sink nothing after', async () => {
    const hung = await new SilentServer().start();
    cleanups.push(() => hung.stop());
    const { source: eureka, sink } = source({ urls: [`http://127.0.0.1:${hung.port}/eureka`], requestTimeoutMs: 30_000 });
    const starting = eureka.start(sink);
    while (hung.accepted() === 0) await sleep(10);
    const stopping = Date.now();
    await eureka.stop();
    await starting;
    expect(Date.now() - stopping).toBeLessThan(1_000);
    expect(sink.events).toEqual([]);
  });
});
