import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceCatalog } from '../../src/registry-bridge/catalog.js';
import { ZookeeperDubboSource } from '../../src/registry-bridge/zookeeper/zookeeper-dubbo.source.js';
import { LocalStack } from '../../stack/local-stack.js';
import { freePort } from '../support/net.js';
import { stack, stackEnv } from '../support/stack.js';
import { javaFormEncode, ZkClient } from '../support/zk.js';

async function until(check: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - started;
}

const provider = (iface: string, app: string, host: string, port: number, extra = '') =>
  javaFormEncode(
    `dubbo://${host}:${port}/${iface}?anyhost=true&application=${app}&dubbo=2.0.2&dynamic=true&interface=${iface}&methods=get,list&pid=1&release=3.3.5&side=provider&timestamp=${Date.now()}${extra}`,
  );
const consumer = (iface: string, app: string, host: string) =>
  javaFormEncode(
    `consumer://${host}/${iface}?application=${app}&category=consumers&check=false&interface=${iface}&methods=get&side=consumer`,
  );

// Each run writes under its own roots, so it neither sees nor disturbs real Dubbo apps in /dubbo.
const run = `t${Date.now().toString(36)}`;
const root = `steward-${run}`;
const servicesRoot = `steward-services-${run}`;
const IFACE = 'com.example.order.OrderService';

describe('ZookeeperDubboSource against the real ZooKeeper', () => {
  let zk: ZkClient;
  let catalog: ServiceCatalog;
  let source: ZookeeperDubboSource;

  beforeAll(async () => {
    zk = await ZkClient.connect(stackEnv.ZOOKEEPER_CONNECT);
    // Interface level: two providers, one consumer, a child that is no URL, and a broken URL.
    await zk.create(`/${root}/${IFACE}/providers/${provider(IFACE, 'orders', '10.1.0.1', 20880)}`);
    await zk.create(`/${root}/${IFACE}/providers/${provider(IFACE, 'orders', '10.1.0.2', 20880, '&weight=50')}`);
    await zk.create(`/${root}/${IFACE}/providers/not-a-registration`);
    await zk.create(`/${root}/${IFACE}/providers/dubbo%3A%2F%2F10.1.0.3%3A99999%2Fx`);
    await zk.create(`/${root}/${IFACE}/consumers/${consumer(IFACE, 'web', '10.1.0.9')}`);
    await zk.mkdirp(`/${root}/config/dubbo`);
    // Application level: one instance with a metadata report, one found through the mapping only.
    const instance = (app: string, host: string, revision: string) =>
      JSON.stringify({
        name: app,
        id: `${host}:20880`,
        address: host,
        port: 20880,
        payload: {
          '@class': 'org.apache.dubbo.registry.zookeeper.ZookeeperInstance',
          id: `${host}:20880`,
          name: app,
          metadata: { 'dubbo.metadata.revision': revision, 'dubbo.endpoints': '[{"port":20880,"protocol":"dubbo"}]' },
        },
        registrationTimeUTC: Date.now(),
        serviceType: 'DYNAMIC',
      });
    await zk.create(`/${servicesRoot}/payments/10.2.0.1:20880`, instance('payments', '10.2.0.1', 'rev1'));
    await zk.create(
      `/${root}/metadata/payments/rev1`,
      JSON.stringify({
        app: 'payments',
        revision: 'rev1',
        services: {
          'com.example.pay.PayService:dubbo': {
            name: 'com.example.pay.PayService',
            protocol: 'dubbo',
            params: { methods: 'pay,refund' },
          },
        },
      }),
    );
    await zk.create(`/${servicesRoot}/stock/10.3.0.1:20880`, instance('stock', '10.3.0.1', '0'));
    await zk.create(`/${root}/mapping/com.example.stock.StockService`, 'stock,other');
    await zk.create(
      `/${root}/metadata/com.example.stock.StockService/provider/stock`,
      JSON.stringify({ parameters: { methods: 'reserve,release' } }),
    );
    await zk.create(`/${servicesRoot}/broken/10.4.0.1:20880`, '{"name":"broken", truncated');

    catalog = new ServiceCatalog({ debounceMs: 20 });
    source = new ZookeeperDubboSource({ connect: stackEnv.ZOOKEEPER_CONNECT, roots: [root], servicesRoot, coalesceMs: 20 });
    await source.start(catalog);
    await until(() => catalog.size().applications >= 4, 10_000, 'the first sync');
  });

  afterAll(async () => {
    await source?.stop();
    catalog?.close();
    await zk.removeTree(`/${root}`);
    await zk.removeTree(`/${servicesRoot}`);
    zk.close();
  });

  it('reads interface-level providers and consumers into one catalog', () => {
    const orders = catalog.application('orders');
    expect(orders?.instances.map((i) => [i.host, i.port, i.weight, i.status])).toEqual([
      ['10.1.0.1', 20880, 100, 'UP'],
      ['10.1.0.2', 20880, 50, 'UP'],
    ]);
    expect(orders?.provides).toEqual([
      expect.objectContaining({ key: IFACE, providers: 2, methods: ['get', 'list'], consumers: ['web'], protocols: ['dubbo'] }),
    ]);
    expect(catalog.application('web')?.consumes).toEqual([{ key: IFACE, providers: ['orders'] }]);
  });

  it('reads application-level instances, with services from the metadata report or the mapping', () => {
    expect(catalog.application('payments')?.provides.map((s) => [s.key, s.methods])).toEqual([
      ['com.example.pay.PayService', ['pay', 'refund']],
    ]);
    expect(catalog.application('stock')?.provides.map((s) => [s.key, s.methods])).toEqual([
      ['com.example.stock.StockService', ['release', 'reserve']],
    ]);
  });

  it('skips and counts unreadable entries without losing their neighbours', () => {
    expect(catalog.sources()[0]?.badInput).toEqual({ 'dubbo-url': 1, 'dubbo-instance': 1 });
    expect(catalog.application('broken')).toBeUndefined();
  });

  it('follows changes through re-armed watches: add, remove, add again', async () => {
    const name = provider(IFACE, 'orders', '10.1.0.7', 20881);
    const path = `/${root}/${IFACE}/providers/${name}`;
    for (let round = 0; round < 3; round++) {
      await zk.create(path);
      await until(() => catalog.instance('orders|dubbo|10.1.0.7:20881') !== undefined, 5_000, `add #${round}`);
      await zk.removeTree(path);
      await until(() => catalog.instance('orders|dubbo|10.1.0.7:20881') === undefined, 5_000, `remove #${round}`);
    }
  });

  it('reads a burst of registrations with a few folder reads, not one per registration', async () => {
    const readsBefore = source.stats.childrenReads;
    const names = Array.from({ length: 300 }, (_, i) =>
      provider(IFACE, 'burst', `10.9.${Math.floor(i / 250)}.${i % 250}`, 20880),
    );
    await Promise.all(names.map((n) => zk.create(`/${root}/${IFACE}/providers/${n}`)));
    await until(() => (catalog.application('burst')?.instanceCount ?? 0) === 300, 10_000, 'the burst');
    expect(source.stats.childrenReads - readsBefore).toBeLessThan(60);
  });

  it('sees an instance’s new revision through its data watch', async () => {
    const path = `/${servicesRoot}/payments/10.2.0.1:20880`;
    await zk.create(
      `/${root}/metadata/payments/rev2`,
      JSON.stringify({
        app: 'payments',
        revision: 'rev2',
        services: {
          'com.example.pay.PayService:dubbo': {
            name: 'com.example.pay.PayService',
            protocol: 'dubbo',
            params: { methods: 'pay,refund,capture' },
          },
        },
      }),
    );
    const data = JSON.parse((await zk.getData(path))!.toString()) as { payload: { metadata: Record<string, string> } };
    data.payload.metadata['dubbo.metadata.revision'] = 'rev2';
    await zk.setData(path, JSON.stringify(data));
    await until(
      () => catalog.application('payments')?.provides[0]?.methods.includes('capture') ?? false,
      5_000,
      'the new revision',
    );
  });

  it('removes an application’s instances when its folder goes', async () => {
    await zk.removeTree(`/${servicesRoot}/stock`);
    await until(() => catalog.application('stock') === undefined, 5_000, 'stock to go');
  });
});

// A private ZooKeeper, so stopping it disturbs nobody else's tests.
describe('ZookeeperDubboSource when ZooKeeper restarts', () => {
  let privateStack: LocalStack;
  let stackDir: string;
  let connect: string;

  beforeAll(async () => {
    stackDir = await mkdtemp(join(tmpdir(), 'steward-zk-restart-'));
    privateStack = new LocalStack({
      ...stack.options,
      stackDir,
      ports: { ...stack.options.ports, zookeeper: await freePort() },
      log: () => undefined,
    });
    await privateStack.up(['zookeeper']);
    connect = `127.0.0.1:${privateStack.options.ports.zookeeper}`;
  });
  afterAll(async () => {
    await privateStack.down();
    await rm(stackDir, { recursive: true, force: true });
  });

  it('keeps entries marked stale while it is down; resumes its session, or resyncs on a new one', async () => {
    const register = async (host: string) => {
      const writer = await ZkClient.connect(connect);
      await writer.create(`/dubbo/${IFACE}/providers/${provider(IFACE, 'orders', host, 20880)}`);
      writer.close();
    };
    await register('10.5.0.1');
    const catalog = new ServiceCatalog({ debounceMs: 10 });
    const source = new ZookeeperDubboSource({ connect, sessionTimeoutMs: 4_000, coalesceMs: 10 });
    await source.start(catalog);
    const hosts = () => catalog.instances().items.map((i) => i.host);
    try {
      await until(() => catalog.size().instances === 1, 10_000, 'the first sync');

      // 1. A restart with its data: the session survives, the client re-arms its watches.
      await privateStack.down(['zookeeper']);
      await until(() => catalog.sources()[0]?.reachable === false, 10_000, 'the outage to be noticed');
      expect(catalog.instances().items.map((i) => [i.host, i.stale])).toEqual([['10.5.0.1', true]]);
      await privateStack.up(['zookeeper']);
      await until(() => catalog.sources()[0]?.reachable === true, 30_000, 'the reconnection');
      await register('10.5.0.2');
      await until(() => hosts().length === 2, 10_000, 'a registration made after the restart');
      expect(catalog.instances().items.every((i) => !i.stale)).toBe(true);

      // 2. A new server that knows nothing of our session: expiry, new session, full resync.
      await privateStack.down(['zookeeper']);
      await rm(join(stackDir, 'data', 'zookeeper', 'data'), { recursive: true, force: true });
      await until(() => catalog.sources()[0]?.reachable === false, 10_000, 'the second outage');
      expect(hosts()).toEqual(['10.5.0.1', '10.5.0.2']); // stale, not dropped
      await privateStack.up(['zookeeper']);
      await register('10.5.0.3');
      await until(() => hosts().join() === '10.5.0.3', 30_000, 'the resync onto the new server');
      expect(source.stats.sessions).toBeGreaterThanOrEqual(2);
      expect(source.stats.resyncs).toBeGreaterThanOrEqual(2);
      expect(catalog.sources()[0]?.reachable).toBe(true);
    } finally {
      await source.stop();
      catalog.close();
    }
  });
});
