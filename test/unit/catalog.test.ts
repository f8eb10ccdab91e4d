import { afterEach, describe, expect, it } from 'vitest';
import { ServiceCatalog, type CatalogChange } from '../../src/registry-bridge/catalog.js';
import type { DubboServiceRef, Registration } from '../../src/registry-bridge/registration.js';

function service(iface: string, side: DubboServiceRef['side'] = 'provider', methods: string[] = ['get']): DubboServiceRef {
  return { key: iface, interface: iface, group: '', version: '', protocol: 'dubbo', methods, side };
}

function reg(overrides: Partial<Registration> & Pick<Registration, 'key'>): Registration {
  return {
    source: 'zookeeper:zk',
    sourceKind: 'zookeeper',
    application: 'orders',
    kind: 'dubbo',
    host: '10.0.0.1',
    port: 20880,
    status: 'UP',
    weight: 100,
    services: [],
    metadata: {},
    ...overrides,
  };
}

const catalogs: ServiceCatalog[] = [];
function newCatalog() {
  const catalog = new ServiceCatalog({ debounceMs: 10 });
  catalogs.push(catalog);
  const batches: CatalogChange[][] = [];
  catalog.subscribe((changes) => batches.push(changes));
  return { catalog, batches };
}
afterEach(() => catalogs.splice(0).forEach((c) => c.close()));

describe('ServiceCatalog', () => {
  it('folds interface-level and application-level registrations of one process into one instance', () => {
    const { catalog } = newCatalog();
    catalog.upsert(reg({ key: '/dubbo/com.a.Orders/providers/x', services: [service('com.a.Orders', 'provider', [])] }));
    catalog.upsert(reg({ key: '/dubbo/com.a.Stock/providers/y', services: [service('com.a.Stock')] }));
    catalog.upsert(
      reg({ key: '/services/orders/10.0.0.1:20880', services: [service('com.a.Orders', 'provider', ['get', 'list'])] }),
    );
    const { items } = catalog.instances();
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ id: 'orders|dubbo|10.0.0.1:20880', registrations: 3, sources: ['zookeeper:zk'] });
    // The application-level entry lists methods; it wins over the interface-level one without.
    expect(items[0]?.services.map((s) => [s.key, s.methods])).toEqual([
      ['com.a.Orders', ['get', 'list']],
      ['com.a.Stock', ['get']],
    ]);
  });

  it('joins one application across ZooKeeper and Eureka', () => {
    const { catalog } = newCatalog();
    catalog.upsert(reg({ key: 'z1', services: [service('com.a.Orders')] }));
    catalog.upsert(reg({ key: 'ORDERS/h:orders:8080', source: 'eureka', sourceKind: 'eureka', kind: 'http', port: 8080 }));
    const app = catalog.application('orders');
    expect(app).toMatchObject({
      sourceKinds: ['eureka', 'zookeeper'],
      instanceCount: 2,
      dubboInstances: 1,
      httpInstances: 1,
      services: 1,
    });
    expect(catalog.applications({ sourceKind: 'eureka' }).items.map((a) => a.name)).toEqual(['orders']);
  });

  it('links providers and consumers of a service across applications', () => {
    const { catalog } = newCatalog();
    catalog.upsert(reg({ key: 'p', services: [service('com.a.Orders')] }));
    catalog.upsert(
      reg({ key: 'c', application: 'web', host: '10.0.0.9', port: 0, services: [service('com.a.Orders', 'consumer')] }),
    );
    expect(catalog.application('orders')?.provides[0]).toMatchObject({ key: 'com.a.Orders', providers: 1, consumers: ['web'] });
    expect(catalog.application('web')?.consumes).toEqual([{ key: 'com.a.Orders', providers: ['orders'] }]);
  });

  it('shows the most restrictive status and the lowest provider weight', () => {
    const { catalog } = newCatalog();
    catalog.upsert(reg({ key: 'a', weight: 200, services: [service('A')] }));
    catalog.upsert(reg({ key: 'b', status: 'DISABLED', weight: 50, services: [service('B')] }));
    expect(catalog.instances().items[0]).toMatchObject({ status: 'DISABLED', weight: 50 });
  });

  it('emits ordered, debounced changes: a remove+add pair within the window is one update', async () => {
    const { catalog, batches } = newCatalog();
    catalog.upsert(reg({ key: 'a', services: [service('A')] }));
    await new Promise((r) => setTimeout(r, 30));
    expect(batches.flat().map((c) => [c.type, c.instance.id])).toEqual([['added', 'orders|dubbo|10.0.0.1:20880']]);

    // Dubbo re-registers a provider to apply a new weight: unregister, register again.
    catalog.remove('zookeeper:zk', 'a');
    catalog.upsert(reg({ key: 'a2', weight: 300, services: [service('A')] }));
    catalog.upsert(reg({ key: 'other', host: '10.0.0.2' }));
    await new Promise((r) => setTimeout(r, 30));
    const second = batches[1] ?? [];
    expect(second.map((c) => [c.type, c.instance.id, c.instance.weight])).toEqual([
      ['updated', 'orders|dubbo|10.0.0.1:20880', 300],
      ['added', 'orders|dubbo|10.0.0.2:20880', 100],
    ]);
    expect(second.map((c) => c.seq)).toEqual([2, 3]);
    catalog.remove('zookeeper:zk', 'other');
    catalog.flush();
    expect(batches[2]?.map((c) => [c.type, c.instance.host])).toEqual([['removed', '10.0.0.2']]);
    expect(catalog.lastSeq()).toBe(4);
  });

  it('keeps an unreachable source’s entries, marked stale, and clears the mark when it is back', () => {
    const { catalog } = newCatalog();
    catalog.upsert(reg({ key: 'z' }));
    catalog.upsert(reg({ key: 'e', source: 'eureka', sourceKind: 'eureka', kind: 'http', port: 8080 }));
    catalog.sourceHealth('eureka', { reachable: false, error: 'connect ECONNREFUSED' });
    expect(catalog.instances({ stale: true }).items.map((i) => i.port)).toEqual([8080]);
    expect(catalog.instances().total).toBe(2);
    expect(catalog.sources().find((s) => s.source === 'eureka')).toMatchObject({
      reachable: false,
      error: 'connect ECONNREFUSED',
      registrations: 1,
    });
    catalog.sourceHealth('eureka', { reachable: true });
    expect(catalog.instances({ stale: true }).total).toBe(0);
  });

  it('replaceAll swaps a source’s whole set without passing through empty', () => {
    const { catalog, batches } = newCatalog();
    catalog.replaceAll('zookeeper:zk', [reg({ key: 'a' }), reg({ key: 'b', host: '10.0.0.2' })]);
    catalog.flush();
    catalog.replaceAll('zookeeper:zk', [reg({ key: 'b', host: '10.0.0.2' }), reg({ key: 'c', host: '10.0.0.3' })]);
    catalog.flush();
    expect(batches[1]?.map((c) => [c.type, c.instance.host])).toEqual([
      ['removed', '10.0.0.1'],
      ['added', '10.0.0.3'],
    ]);
    expect(catalog.size()).toEqual({ applications: 1, instances: 2, registrations: 2 });
  });

  it('filters and pages instances and applications', () => {
    const { catalog } = newCatalog();
    for (let i = 0; i < 30; i++)
      catalog.upsert(
        reg({
          key: `k${i}`,
          application: `app-${String(i).padStart(2, '0')}`,
          host: `10.0.1.${i}`,
          status: i % 3 === 0 ? 'DOWN' : 'UP',
        }),
      );
    expect(catalog.applications({ offset: 10, limit: 5 })).toMatchObject({
      total: 30,
      items: [{ name: 'app-10' }, { name: 'app-11' }, { name: 'app-12' }, { name: 'app-13' }, { name: 'app-14' }],
    });
    expect(catalog.applications({ q: 'APP-2' }).total).toBe(10);
    expect(catalog.instances({ status: 'DOWN' }).total).toBe(10);
    expect(catalog.instances({ host: '10.0.1.7' }).items.map((i) => i.application)).toEqual(['app-07']);
    expect(catalog.instances({ application: 'app-03', status: 'DOWN' }).total).toBe(1);
  });

  it('counts bad input per source and kind, and a throwing listener harms no one', () => {
    const { catalog, batches } = newCatalog();
    catalog.subscribe(() => {
      throw new Error('listener bug');
    });
    catalog.badInput('zookeeper:zk', 'dubbo-url', 'x');
    catalog.badInput('zookeeper:zk', 'dubbo-url', 'y');
    catalog.upsert(reg({ key: 'a' }));
    catalog.flush();
    expect(batches).toHaveLength(1);
    expect(catalog.sources()[0]?.badInput).toEqual({ 'dubbo-url': 2 });
  });
});
