import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../support/app.js';
import {
  buildJavaFixtures,
  eurekaInstances,
  type FixtureHandle,
  GREETINGS_SERVICE,
  ORDER_SERVICE,
  startFixture,
  STOCK_SERVICE,
  stopAllFixtures,
} from '../support/java-fixtures.js';

// Real Dubbo 3.3, Dubbo 2.7 and Spring Boot + Eureka applications, read through Steward's API,
// and Steward's native controls proven on them.
const run = randomBytes(3).toString('hex');
const group = `st${run}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Instance {
  id: string;
  kind: string;
  host: string;
  port: number;
  status: string;
  sourceKinds: string[];
  metadata: Record<string, string>;
  services: { key: string; interface: string; methods: string[]; side: string }[];
}
interface Detail {
  sourceKinds: string[];
  provides: { key: string; methods: string[]; providers: number; consumers: string[] }[];
  consumes: { key: string; providers: string[] }[];
  instances: Instance[];
}

describe('the registry bridge on real Dubbo and Spring Cloud applications', () => {
  let server: RunningApp;
  let providerA: FixtureHandle;
  let providerB: FixtureHandle;
  let consumer: FixtureHandle;
  let spring: FixtureHandle;
  let legacy: FixtureHandle;
  let instanceOnly: FixtureHandle;
  const apps = { provider: `rp-${run}`, consumer: `rc-${run}`, legacy: `rl-${run}`, instance: `ri-${run}`, spring: `rs-${run}` };

  const detail = async (app: string) => (await server.api(`/api/registry/applications/${app}`)).json() as Promise<Detail>;
  async function until<T>(what: string, read: () => Promise<T>, accept: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await read();
      if (accept(value)) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value).slice(0, 500)}`);
      await sleep(200);
    }
  }
  const consumerCalls = async (ms: number) => {
    await fetch(`${consumer.url}/reset`, { method: 'POST' });
    await sleep(ms);
    return ((await (await fetch(`${consumer.url}/stats`)).json()) as { ports: Record<string, number> }).ports;
  };
  const control = async (body: object) => {
    const res = await server.api('/api/registry/controls', { method: 'POST', json: body });
    expect(res.status).toBe(201);
    return (await res.json()) as { _id: string };
  };
  const revert = async (id: string) =>
    expect((await server.api(`/api/registry/controls/${id}/revert`, { method: 'POST', json: {} })).status).toBe(200);

  beforeAll(async () => {
    await buildJavaFixtures((line) => console.log(`[fixtures] ${line}`));
    server = await startApp({ EUREKA_FETCH_INTERVAL_MS: '1000', REGISTRY_DEBOUNCE_MS: '50' });
    [providerA, providerB, legacy, instanceOnly, spring] = await Promise.all([
      startFixture('dubbo3-provider', { app: apps.provider, group, warmupMs: 0 }),
      startFixture('dubbo3-provider', { app: apps.provider, group, warmupMs: 0 }),
      startFixture('dubbo27-provider', { app: apps.legacy, group: `${group}-legacy` }),
      startFixture('dubbo3-provider', { app: apps.instance, group: `${group}-inst`, registerMode: 'instance' }),
      startFixture('spring-eureka-app', { app: apps.spring }),
    ]);
    consumer = await startFixture('dubbo3-consumer', { app: apps.consumer, group });
  }, 900_000);

  afterAll(async () => {
    await stopAllFixtures();
    await server?.close();
  }, 60_000);

  it('shows a Dubbo 3 application registered at both levels as one instance per process, with its services and consumer', async () => {
    const app = await until(
      'the provider app',
      () => detail(apps.provider),
      (d) => d.instances?.length === 2 && d.provides?.find((x) => x.key.endsWith(GREETINGS_SERVICE))?.consumers.length === 1,
    );
    expect(app.instances.map((i) => [i.kind, i.host, i.port]).sort()).toEqual(
      [
        ['dubbo', '127.0.0.1', providerA.port],
        ['dubbo', '127.0.0.1', providerB.port],
      ].sort(),
    );
    expect(app.provides.map((s) => [s.key, s.methods, s.providers, s.consumers])).toEqual(
      [
        [`${group}/${ORDER_SERVICE}`, ['get', 'list'], 2, []],
        [`${group}/${GREETINGS_SERVICE}`, ['sayHi'], 2, [apps.consumer]],
      ].sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    );
    expect(app.instances[0]?.metadata['release']).toMatch(/^3\.3\./);
    const consumerApp = await detail(apps.consumer);
    expect(consumerApp.consumes).toEqual([{ key: `${group}/${GREETINGS_SERVICE}`, providers: [apps.provider] }]);
  });

  it('reads a Dubbo 2.7 interface-level provider and a Dubbo 3 provider registered at application level only', async () => {
    const legacyApp = await until(
      'the Dubbo 2.7 app',
      () => detail(apps.legacy),
      (d) => d.instances?.length === 1,
    );
    expect(legacyApp.instances[0]).toMatchObject({ kind: 'dubbo', host: '127.0.0.1', port: legacy.port });
    expect(legacyApp.instances[0]?.metadata['release']).toBe('2.7.23');
    const instanceApp = await until(
      'the instance-only app',
      () => detail(apps.instance),
      (d) => (d.provides?.length ?? 0) >= 2,
    );
    expect(instanceApp.instances.map((i) => [i.port, i.services.length > 0])).toEqual([[instanceOnly.port, true]]);
    // Interfaces from the mapping; group and methods from the service definitions.
    expect(instanceApp.provides.map((s) => s.key).sort()).toEqual(
      [`${group}-inst/${GREETINGS_SERVICE}`, `${group}-inst/${ORDER_SERVICE}`].sort(),
    );
    expect(instanceApp.provides.find((s) => s.key.endsWith(GREETINGS_SERVICE))?.methods).toEqual(['sayHi']);
  });

  it('joins a Spring Boot app registered in Eureka and, through Dubbo, in ZooKeeper into one application', async () => {
    const app = await until(
      'the Spring app in both registries',
      () => detail(apps.spring),
      (d) => d.sourceKinds?.length === 2,
    );
    expect(app.instances.map((i) => [i.kind, i.host, i.sourceKinds]).sort()).toEqual([
      ['dubbo', '127.0.0.1', ['zookeeper']],
      ['http', '127.0.0.1', ['eureka']],
    ]);
    expect(app.instances.find((i) => i.kind === 'http')).toMatchObject({ port: spring.ports.http, status: 'UP' });
    expect(app.provides.map((s) => s.key)).toEqual([STOCK_SERVICE]);
  });

  it('isolates one Dubbo provider: the real consumer stops calling it, and calls it again after the revert', async () => {
    await until(
      'the consumer to call both providers',
      () => consumerCalls(1_000),
      (p) => (p[providerA.port] ?? 0) > 0 && (p[providerB.port] ?? 0) > 0,
    );
    const isolated = await control({
      action: 'isolate',
      instanceId: `${apps.provider}|dubbo|127.0.0.1:${providerB.port}`,
      reason: 'test',
    });
    await sleep(1_000); // the consumer drops it within ~0.2 s; leave room
    const during = await consumerCalls(2_000);
    expect(during[providerB.port] ?? 0).toBe(0);
    expect(during[providerA.port] ?? 0).toBeGreaterThan(20);
    await revert(isolated._id);
    const after = await until(
      'calls to the restored provider',
      () => consumerCalls(1_000),
      (p) => (p[providerB.port] ?? 0) > 0,
      20_000,
    );
    expect(after[providerA.port] ?? 0).toBeGreaterThan(0);
  });

  it('weights a Dubbo provider: the real consumer sends it most calls', async () => {
    const weighted = await control({
      action: 'weight',
      instanceId: `${apps.provider}|dubbo|127.0.0.1:${providerB.port}`,
      weight: 900,
    });
    const share = await until(
      'the weight to apply',
      async () => {
        const p = await consumerCalls(2_000);
        return (p[providerB.port] ?? 0) / Math.max(1, (p[providerB.port] ?? 0) + (p[providerA.port] ?? 0));
      },
      (s) => s > 0.75,
      20_000,
    );
    expect(share).toBeGreaterThan(0.75);
    await revert(weighted._id);
  });

  it('isolates the Spring app in Eureka: Eureka clients see it OUT_OF_SERVICE, then UP again', async () => {
    const id = `${apps.spring}|http|127.0.0.1:${spring.ports.http}`;
    const isolated = await control({ action: 'isolate', instanceId: id });
    expect((await eurekaInstances(apps.spring)).map((i) => i.status)).toEqual(['OUT_OF_SERVICE']);
    await until(
      'the catalog to show it',
      async () => ((await (await server.api(`/api/registry/instances/${encodeURIComponent(id)}`)).json()) as Instance).status,
      (s) => s === 'OUT_OF_SERVICE',
    );
    await revert(isolated._id);
    await until(
      'Eureka to show it UP',
      async () => (await eurekaInstances(apps.spring)).map((i) => i.status).join(),
      (s) => s === 'UP',
    );
  });
});
