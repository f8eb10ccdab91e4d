import { randomBytes } from 'node:crypto';
import zookeeper from 'node-zookeeper-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildJavaFixtures,
  eurekaInstances,
  type FixtureHandle,
  GREETINGS_SERVICE,
  ORDER_SERVICE,
  startFixture,
  STOCK_SERVICE,
  stopAllFixtures,
  withZookeeper,
} from '../support/java-fixtures.js';
import { stackEnv } from '../support/stack.js';

const zkConnect = stackEnv.ZOOKEEPER_CONNECT;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Names unique to this run, so nodes left by another run (or a crashed one) do not count.
const run = randomBytes(3).toString('hex');
const group = `fx${run}`;

interface Stats {
  ports: Record<string, number>;
  total: number;
  errors: number;
  lastError: string | null;
}

async function stats(consumer: FixtureHandle): Promise<Stats> {
  return (await (await fetch(`${consumer.url}/stats`)).json()) as Stats;
}

/** Calls per provider port during `ms`, counted from a reset. */
async function callsDuring(consumer: FixtureHandle, ms: number): Promise<Stats> {
  await fetch(`${consumer.url}/reset`, { method: 'POST' });
  await sleep(ms);
  return stats(consumer);
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Writes (creating parents) or deletes a persistent node, as an admin tool or the bridge would. */
async function zkWrite(path: string, data: string | null): Promise<void> {
  const client = zookeeper.createClient(zkConnect, { sessionTimeout: 10_000, retries: 0 });
  await new Promise<void>((resolve) => {
    client.once('connected', () => resolve());
    client.connect();
  });
  try {
    const call = (fn: (cb: (e: Error | zookeeper.Exception | null) => void) => void) =>
      new Promise<void>((resolve, reject) => fn((e) => (e ? reject(e instanceof Error ? e : new Error(String(e))) : resolve())));
    if (data === null) {
      await call((cb) => client.remove(path, -1, cb)).catch(() => undefined);
      return;
    }
    await call((cb) => client.mkdirp(path.slice(0, path.lastIndexOf('/')), cb));
    const exists = await new Promise<boolean>((resolve) => client.exists(path, (_e, stat) => resolve(!!stat)));
    if (exists) await call((cb) => client.setData(path, Buffer.from(data), -1, cb));
    else await call((cb) => client.create(path, Buffer.from(data), cb));
  } finally {
    client.close();
  }
}

describe('the Java fixture applications, against the real stack', () => {
  beforeAll(async () => {
    const build = await buildJavaFixtures((line) => console.log(`[fixtures] ${line}`));
    console.log(`[fixtures] ${build.built ? 'built' : 'cached'} ${build.dir} (${(build.buildMs / 1000).toFixed(1)} s)`);
  }, 900_000);
  afterAll(async () => {
    await stopAllFixtures();
    // Curator leaves the persistent parent /services/<app> behind: drop this run's empty ones.
    await withZookeeper(zkConnect, async (zk) => {
      for (const app of (await zk.children('/services')).filter((name) => name.startsWith(`fx-${run}-`))) {
        if ((await zk.children(`/services/${app}`)).length === 0) await zkWrite(`/services/${app}`, null);
      }
    });
  }, 60_000);

  it('a Dubbo 3 provider in register-mode all writes interface-level and application-level nodes', async () => {
    const app = `fx-${run}-all`;
    const provider = await startFixture('dubbo3-provider', { app, group, metadataType: 'remote' });
    const address = `127.0.0.1:${provider.port}`;
    await withZookeeper(zkConnect, async (zk) => {
      for (const iface of [GREETINGS_SERVICE, ORDER_SERVICE]) {
        const mine = (await zk.providerUrls(iface)).filter((u) => u.includes(`application=${app}&`));
        expect(mine).toHaveLength(1);
        expect(mine[0]).toMatch(new RegExp(`^dubbo://${address}/${iface.replace(/\./g, '\\.')}\\?`));
        expect(mine[0]).toContain(`group=${group}`);
        expect((await zk.text(`/dubbo/mapping/${iface}`))?.split(',')).toContain(app);
      }
      const [encoded] = (await zk.children(`/dubbo/${GREETINGS_SERVICE}/providers`)).filter((n) => n.includes(app));
      expect((await zk.stat(`/dubbo/${GREETINGS_SERVICE}/providers/${encoded}`))?.ephemeral).toBe(true);

      expect(await zk.children(`/services/${app}`)).toEqual([address]);
      expect((await zk.stat(`/services/${app}/${address}`))?.ephemeral).toBe(true);
      const instance = JSON.parse((await zk.text(`/services/${app}/${address}`))!) as {
        address: string;
        port: number;
        payload: { '@class': string; metadata: Record<string, string> };
      };
      expect(instance).toMatchObject({ address: '127.0.0.1', port: provider.port });
      expect(instance.payload['@class']).toBe('org.apache.dubbo.registry.zookeeper.ZookeeperInstance');
      const revision = instance.payload.metadata['dubbo.metadata.revision']!;
      expect(instance.payload.metadata['dubbo.metadata.storage-type']).toBe('remote');

      // metadata-type=remote: the MetadataInfo of this revision lies in ZooKeeper.
      const metadata = JSON.parse((await zk.text(`/dubbo/metadata/${app}/${revision}`))!) as {
        app: string;
        services: Record<string, { name: string; group: string }>;
      };
      expect(metadata.app).toBe(app);
      expect(Object.keys(metadata.services).sort()).toEqual(
        [`${group}/${ORDER_SERVICE}:dubbo`, `${group}/${GREETINGS_SERVICE}:dubbo`].sort(),
      );
    });

    await provider.stop();
    await withZookeeper(zkConnect, async (zk) => {
      expect(await zk.children(`/services/${app}`)).toEqual([]);
      expect((await zk.providerUrls(GREETINGS_SERVICE)).filter((u) => u.includes(`application=${app}&`))).toEqual([]);
    });
  });

  it('a Dubbo 3 provider in register-mode instance writes only /services', async () => {
    const app = `fx-${run}-instance`;
    const provider = await startFixture('dubbo3-provider', { app, group, registerMode: 'instance' });
    await withZookeeper(zkConnect, async (zk) => {
      expect(await zk.children(`/services/${app}`)).toEqual([`127.0.0.1:${provider.port}`]);
      for (const iface of [GREETINGS_SERVICE, ORDER_SERVICE]) {
        expect((await zk.providerUrls(iface)).filter((u) => u.includes(`application=${app}&`))).toEqual([]);
        expect((await zk.text(`/dubbo/mapping/${iface}`))?.split(',')).toContain(app);
      }
    });
    await provider.stop();
  });

  it('a Dubbo 2.7 provider registers interface-level only', async () => {
    const app = `fx-${run}-legacy`;
    const provider = await startFixture('dubbo27-provider', { app, group });
    await withZookeeper(zkConnect, async (zk) => {
      const mine = (await zk.providerUrls(GREETINGS_SERVICE)).filter((u) => u.includes(`application=${app}&`));
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatch(new RegExp(`^dubbo://127\\.0\\.0\\.1:${provider.port}/`));
      expect(mine[0]).toMatch(/[?&]release=2\.7\.23(&|$)/);
      expect(await zk.children(`/services/${app}`)).toEqual([]);
      expect(await zk.stat(`/services/${app}`)).toBeUndefined();
      expect((await zk.text(`/dubbo/mapping/${GREETINGS_SERVICE}`))?.split(',') ?? []).not.toContain(app);
    });
    await provider.stop();
  });

  it('a Dubbo 3 consumer calls every provider of its group and counts the calls per provider port', async () => {
    const [one, two] = await Promise.all([
      startFixture('dubbo3-provider', { app: `fx-${run}-pair`, group, warmupMs: 0 }),
      startFixture('dubbo3-provider', { app: `fx-${run}-pair`, group, warmupMs: 0 }),
    ]);
    const consumer = await startFixture('dubbo3-consumer', { app: `fx-${run}-consumer`, group });
    const ports = [String(one.port), String(two.port)].sort();
    await until('calls to both providers', async () => {
      const s = await stats(consumer);
      return ports.every((p) => (s.ports[p] ?? 0) > 0) ? s : undefined;
    });
    const s = await callsDuring(consumer, 2_000);
    expect(Object.keys(s.ports).sort()).toEqual(ports);
    expect(s.total).toBeGreaterThan(40); // a call every ~20 ms
    expect(s.errors).toBe(0);
    for (const port of ports) expect(s.ports[port]).toBeGreaterThan(s.total / 5);

    await withZookeeper(zkConnect, async (zk) => {
      const consumers = (await zk.children(`/dubbo/${GREETINGS_SERVICE}/consumers`)).map((n) => decodeURIComponent(n));
      expect(consumers.some((u) => u.startsWith('consumer://127.0.0.1/') && u.includes(`application=${consumer.app}&`))).toBe(
        true,
      );
    });
    await Promise.all([one.stop(), two.stop(), consumer.stop()]);
  });

  it('a Spring Boot app is UP in Eureka and, under the same name, a Dubbo provider in ZooKeeper', async () => {
    const app = `fx-${run}-spring`;
    const spring = await startFixture('spring-eureka-app', { app });
    const [instance] = await eurekaInstances(app);
    expect(instance).toMatchObject({ app: app.toUpperCase(), ipAddr: '127.0.0.1', status: 'UP' });
    expect(instance?.port.$).toBe(spring.ports.http);
    expect(await (await fetch(`${spring.url}/hello`)).json()).toMatchObject({ app, port: spring.ports.http });

    await withZookeeper(zkConnect, async (zk) => {
      expect(await zk.children(`/services/${app}`)).toEqual([`127.0.0.1:${spring.ports.dubbo}`]);
      const mine = (await zk.providerUrls(STOCK_SERVICE)).filter((u) => u.includes(`application=${app}&`));
      expect(mine).toHaveLength(1);
    });

    await spring.stop();
    expect(await eurekaInstances(app)).toEqual([]); // cancelled on the way out
  });

  // The recipe in test/fixtures/java/NOTES.md: how the bridge takes one instance away from real
  // consumers and gives it back (Dubbo 3.3 consumer with its default address migration).
  describe('dynamic configuration (configurators) on a real Dubbo 3 consumer', () => {
    const app = `fx-${run}-gov`;
    let one: FixtureHandle;
    let two: FixtureHandle;
    let consumer: FixtureHandle;

    beforeAll(async () => {
      [one, two] = await Promise.all([
        startFixture('dubbo3-provider', { app, group: `${group}gov`, warmupMs: 0 }),
        startFixture('dubbo3-provider', { app, group: `${group}gov`, warmupMs: 0 }),
      ]);
      consumer = await startFixture('dubbo3-consumer', { app: `fx-${run}-gov-consumer`, group: `${group}gov` });
      await until('calls to both providers', async () => {
        const s = await stats(consumer);
        return [one.port, two.port].every((p) => (s.ports[p] ?? 0) > 0) ? s : undefined;
      });
    }, 300_000);
    afterAll(() => Promise.all([one?.stop(), two?.stop(), consumer?.stop()]), 60_000);

    const rule = (scope: 'service' | 'application', key: string, body: string) =>
      `configVersion: v3.0\nscope: ${scope}\nkey: ${key}\nenabled: true\nconfigs:\n${body}`;

    async function takeAwayAndGiveBack(path: string, disable: string, enable: string) {
      const target = String(two.port);
      try {
        const t0 = Date.now();
        await zkWrite(path, disable);
        // stopped: no call to the target during a whole second
        await until('the consumer to stop calling the instance', async () => {
          const s = await callsDuring(consumer, 1_000);
          return (s.ports[target] ?? 0) === 0 && s.total > 0 ? s : undefined;
        });
        const stopMs = Date.now() - t0; // coarse: the end of the first 1-s window without a call to it
        const t1 = Date.now();
        await zkWrite(path, enable);
        await until('the consumer to call the instance again', async () => {
          const s = await stats(consumer);
          return (s.ports[target] ?? 0) > 0 ? s : undefined;
        });
        const backMs = Date.now() - t1;
        // And it stays back once the rule is gone altogether.
        await zkWrite(path, null);
        await sleep(1_500);
        const after = await callsDuring(consumer, 2_000);
        expect(after.ports[target]).toBeGreaterThan(0);
        expect(after.ports[String(one.port)]).toBeGreaterThan(0);
        return { stopMs, backMs };
      } finally {
        await zkWrite(path, null);
      }
    }

    it('service scope, side consumer, providerAddresses: disabled true takes it away, disabled false gives it back', async () => {
      const key = `${group}gov/${GREETINGS_SERVICE}`;
      const path = `/dubbo/config/dubbo/${GREETINGS_SERVICE}::${group}gov.configurators`;
      const body = (disabled: boolean) =>
        `  - side: consumer\n    addresses: ["0.0.0.0"]\n    providerAddresses: ["127.0.0.1:${two.port}"]\n    parameters:\n      disabled: ${disabled}\n`;
      const { stopMs, backMs } = await takeAwayAndGiveBack(
        path,
        rule('service', key, body(true)),
        rule('service', key, body(false)),
      );
      console.log(
        `[fixtures] service-scope consumer-side rule: no calls in a 1-s window ending ${stopMs} ms after the write, back after ${backMs} ms`,
      );
      expect(backMs).toBeLessThan(10_000);
    });

    it('application scope of the provider app, side provider: disabled true takes it away, disabled false gives it back', async () => {
      const path = `/dubbo/config/dubbo/${app}.configurators`;
      const body = (disabled: boolean) =>
        `  - side: provider\n    addresses: ["127.0.0.1:${two.port}"]\n    parameters:\n      disabled: ${disabled}\n`;
      const { stopMs, backMs } = await takeAwayAndGiveBack(
        path,
        rule('application', app, body(true)),
        rule('application', app, body(false)),
      );
      console.log(
        `[fixtures] application-scope provider-side rule: no calls in a 1-s window ending ${stopMs} ms after the write, back after ${backMs} ms`,
      );
      expect(backMs).toBeLessThan(10_000);
    });

    it('a weight in a provider-side rule shifts the share of calls', async () => {
      const path = `/dubbo/config/dubbo/${app}.configurators`;
      const weight = rule(
        'application',
        app,
        `  - side: provider\n    addresses: ["127.0.0.1:${two.port}"]\n    parameters:\n      weight: 400\n`,
      );
      try {
        await zkWrite(path, weight);
        const s = await until('the weight to apply', async () => {
          const s = await callsDuring(consumer, 3_000);
          return (s.ports[two.port] ?? 0) > 0.65 * s.total ? s : undefined;
        });
        expect(s.ports[one.port]).toBeGreaterThan(0); // 400:100 → about 80 % : 20 %
      } finally {
        await zkWrite(path, null);
      }
    });
  });
});
