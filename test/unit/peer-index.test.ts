import { afterEach, describe, expect, it } from 'vitest';
import { CallRecordSchema, StatsEntrySchema, type StatsEntry } from '../../src/agent-protocol/messages.js';
import { PEER, peerAddress } from '../../src/agent-protocol/peer-address.js';
import { mergeEntry, PeerIndex, resolveEntries, resolveRecords } from '../../src/agent-protocol/peer-index.js';
import { ServiceCatalog } from '../../src/registry-bridge/catalog.js';
import { readFullRegistry } from '../../src/registry-bridge/eureka/eureka-json.js';
import type { Registration } from '../../src/registry-bridge/registration.js';
import { registrationFromZnode } from '../../src/registry-bridge/zookeeper/dubbo-url.js';
import { instanceInfo } from '../support/eureka-registrations.js';

// The server side of address peers: the address → application index built from the registry
// catalog (Dubbo providers in ZooKeeper, Eureka instances) and the agents' hellos, and the rewrite
// of stats and records frames with it (colliding entries merged).

function entry(overrides: Partial<StatsEntry>): StatsEntry {
  return {
    direction: 'outbound',
    peer: '',
    protocol: 'http',
    resource: 'GET /api/items/{id}',
    calls: 1,
    successes: 1,
    errors: 0,
    limited: 0,
    broken: 0,
    degraded: 0,
    slow: 0,
    latencySumMs: 5,
    latencyMaxMs: 5,
    histogram: [[5, 1]],
    ...overrides,
  };
}

/** A Dubbo provider as it appears under `/dubbo/<interface>/providers` (Java form-encoded URL). */
function dubboProvider(application: string, host: string, port: number, iface = 'com.example.StockService'): Registration {
  const url = `dubbo://${host}:${port}/${iface}?application=${application}&interface=${iface}&methods=reserve&side=provider`;
  return registrationFromZnode(
    'zookeeper:zk',
    { path: `/dubbo/${iface}/providers`, interface: iface, category: 'providers' },
    encodeURIComponent(url),
  );
}

/** Eureka instances as a Spring Cloud client registers them, read as the Eureka source reads `/apps`. */
function eurekaInstances(...instances: { app: string; ip: string; port: number; status?: 'UP' | 'DOWN' }[]): Registration[] {
  const byApp = new Map<string, unknown[]>();
  for (const i of instances) {
    const list = byApp.get(i.app) ?? [];
    list.push(instanceInfo({ ...i, instanceId: `${i.ip}:${i.app.toLowerCase()}:${i.port}` }).instance);
    byApp.set(i.app, list);
  }
  const applications = { application: [...byApp].map(([name, instance]) => ({ name, instance })) };
  return readFullRegistry(applications, 'eureka').registrations;
}

const catalogs: ServiceCatalog[] = [];
afterEach(() => catalogs.splice(0).forEach((c) => c.close()));

/** A catalog feeding an index as the hub wires them: the current instances, then every change batch. */
function wired() {
  const catalog = new ServiceCatalog({ debounceMs: 1 });
  catalogs.push(catalog);
  const index = new PeerIndex();
  catalog.subscribe((changes) => index.catalogChanged(changes));
  index.loadCatalog(catalog.instances({}, { limit: Number.MAX_SAFE_INTEGER }).items);
  return { catalog, index };
}

describe('peer addresses', () => {
  it.each([
    ['10.0.0.9', 8080, '10.0.0.9:8080'],
    ['Stock-Host', 80, 'stock-host:80'],
    ['::1', 9000, '[::1]:9000'],
    ['[FE80::1]', 443, '[fe80::1]:443'],
    ['bad host', 80, ''],
    ['h'.repeat(130), 80, ''],
  ])('%s:%i is written %j', (host, port, address) => {
    expect(peerAddress(host, port)).toBe(address);
  });

  it('are valid peers in stats entries and call records, next to names and ""', () => {
    for (const peer of ['', 'stock', '10.0.0.9:8080', '[::1]:9000', 'localhost:80']) {
      expect(PEER.test(peer)).toBe(true);
      expect(StatsEntrySchema.safeParse(entry({ peer })).success).toBe(true);
    }
    for (const peer of ['Stock', '10.0.0.9:', ':80', '10.0.0.9:0', 'a/b:80', `${'h'.repeat(130)}:80`, '[::1', 'x:80:80']) {
      expect(PEER.test(peer)).toBe(false);
      expect(StatsEntrySchema.safeParse(entry({ peer })).success).toBe(false);
    }
    const record = {
      at: 1,
      traceId: '0123456789abcdef',
      direction: 'outbound',
      caller: 'web',
      callee: '10.0.0.9:8080',
      protocol: 'http',
      method: 'GET',
      path: '/',
      status: 200,
      latencyMs: 1,
      outcome: 'success',
      kept: 'sampled',
    };
    expect(CallRecordSchema.safeParse(record).success).toBe(true);
  });
});

describe('the address index', () => {
  it('knows Dubbo providers from ZooKeeper and Eureka instances from the catalog, and follows its changes', () => {
    const { catalog, index } = wired();
    catalog.upsert(dubboProvider('Stock', '10.0.0.5', 20880));
    for (const r of eurekaInstances(
      { app: 'BILLING', ip: '10.0.0.6', port: 8080 },
      { app: 'BILLING', ip: 'fe80::6', port: 8080 },
    )) {
      catalog.upsert(r);
    }
    catalog.flush();
    expect(index.resolve('10.0.0.5:20880')).toBe('stock');
    expect(index.resolve('10.0.0.6:8080')).toBe('billing');
    expect(index.resolve('[fe80::6]:8080')).toBe('billing');
    expect(index.resolve('10.0.0.6:8081')).toBeUndefined();

    catalog.remove('eureka', 'BILLING/10.0.0.6:billing:8080');
    catalog.flush();
    expect(index.resolve('10.0.0.6:8080')).toBeUndefined();
    expect(index.resolve('[fe80::6]:8080')).toBe('billing');

    // An index created later starts from the catalog as it is.
    const late = new PeerIndex();
    late.loadCatalog(catalog.instances({}, { limit: Number.MAX_SAFE_INTEGER }).items);
    expect(late.resolve('10.0.0.5:20880')).toBe('stock');
    expect(late.resolve('[fe80::6]:8080')).toBe('billing');
  });

  it('prefers a running instance, then the smallest name, whatever the order; skips names that are not application names', () => {
    const { catalog, index } = wired();
    const [down] = eurekaInstances({ app: 'OLD', ip: '10.0.0.7', port: 8080, status: 'DOWN' });
    const [up] = eurekaInstances({ app: 'NEW', ip: '10.0.0.7', port: 8080 });
    catalog.upsert(down!);
    catalog.upsert(up!);
    catalog.upsert({ ...up!, key: 'weird', application: 'not a name', host: '10.0.0.8' });
    catalog.flush();
    expect(index.resolve('10.0.0.7:8080')).toBe('new');
    expect(index.resolve('10.0.0.8:8080')).toBeUndefined();
    catalog.remove('eureka', up!.key);
    catalog.flush();
    expect(index.resolve('10.0.0.7:8080')).toBe('old');
  });

  it('knows connected agents by their hello host and ports, before the catalog, and forgets them when they leave', () => {
    const { catalog, index } = wired();
    for (const r of eurekaInstances({ app: 'STALE', ip: '10.0.0.9', port: 8080 })) catalog.upsert(r);
    catalog.flush();
    index.agentListening({ instanceId: 'o-1', application: 'orders', host: '10.0.0.9', ports: [] });
    expect(index.resolve('10.0.0.9:8080')).toBe('stale');
    index.agentListening({ instanceId: 'o-1', application: 'orders', host: '10.0.0.9', ports: [8080, 9090] });
    expect(index.resolve('10.0.0.9:8080')).toBe('orders');
    expect(index.resolve('10.0.0.9:9090')).toBe('orders');
    index.agentListening({ instanceId: 'o-1', application: 'orders', host: '10.0.0.9', ports: [9090] });
    expect(index.resolve('10.0.0.9:8080')).toBe('stale');
    index.agentGone('o-1');
    expect(index.resolve('10.0.0.9:9090')).toBeUndefined();
  });

  it("reads a loopback address as the reporting agent's own host first", () => {
    const index = new PeerIndex();
    index.agentListening({ instanceId: 'web-1', application: 'web', host: '10.0.0.1', ports: [80] });
    index.agentListening({ instanceId: 'side-1', application: 'sidecar', host: '10.0.0.1', ports: [15000] });
    index.agentListening({ instanceId: 'dev-1', application: 'dev', host: '127.0.0.1', ports: [15000] });
    expect(index.resolve('127.0.0.1:15000', 'web-1')).toBe('sidecar');
    expect(index.resolve('localhost:15000', 'web-1')).toBe('sidecar');
    expect(index.resolve('[::1]:15000', 'web-1')).toBe('sidecar');
    // Nothing at the reporter's own host: the address as written.
    expect(index.resolve('127.0.0.1:15000', 'dev-1')).toBe('dev');
    expect(index.resolve('127.0.0.1:15000')).toBe('dev');
    expect(index.resolve('127.0.0.1:15000', 'unknown')).toBe('dev');
  });
});

describe('resolving a frame', () => {
  const known = new Map([
    ['10.0.0.5:8080', 'stock'],
    ['10.0.0.6:8080', 'stock'],
    ['10.0.0.7:8080', 'billing'],
  ]);
  const resolve = (address: string) => known.get(address);

  it('gives back the same entries when no peer resolves', () => {
    const entries = [entry({ peer: 'stock' }), entry({ peer: '' }), entry({ peer: '10.9.9.9:80' })];
    expect(resolveEntries(entries, resolve)).toBe(entries);
  });

  it('names resolved addresses, keeps unknown ones, and merges entries that now share a key', () => {
    const entries = [
      entry({ peer: 'stock', calls: 2, successes: 2, latencySumMs: 10, latencyMaxMs: 5, histogram: [[5, 2]] }),
      entry({
        peer: '10.0.0.5:8080',
        calls: 3,
        successes: 2,
        errors: 1,
        latencySumMs: 70,
        latencyMaxMs: 40,
        histogram: [
          [3, 1],
          [5, 1],
          [37, 1],
        ],
      }),
      entry({ peer: '10.0.0.6:8080', calls: 1, successes: 0, limited: 1, latencySumMs: 0, latencyMaxMs: 0, histogram: [] }),
      entry({ peer: '10.0.0.5:8080', resource: 'POST /api/items' }),
      entry({ peer: '10.0.0.7:8080', direction: 'inbound' }),
      entry({ peer: '10.9.9.9:80' }),
      entry({ peer: 'stock', protocol: 'dubbo', resource: 'com.example.StockService#reserve' }),
    ];
    const before = JSON.stringify(entries);
    const resolved = resolveEntries(entries, resolve);
    expect(JSON.stringify(entries)).toBe(before);
    expect(resolved).toEqual([
      entry({
        peer: 'stock',
        calls: 6,
        successes: 4,
        errors: 1,
        limited: 1,
        latencySumMs: 80,
        latencyMaxMs: 40,
        histogram: [
          [3, 1],
          [5, 3],
          [37, 1],
        ],
      }),
      entry({ peer: 'stock', resource: 'POST /api/items' }),
      entry({ peer: 'billing', direction: 'inbound' }),
      entry({ peer: '10.9.9.9:80' }),
      entry({ peer: 'stock', protocol: 'dubbo', resource: 'com.example.StockService#reserve' }),
    ]);
    for (const e of resolved) expect(StatsEntrySchema.safeParse(e).success).toBe(true);
    // Every call is still counted once.
    const sum = (list: StatsEntry[]) => list.reduce((n, e) => n + e.calls, 0);
    expect(sum(resolved)).toBe(sum(entries));
  });

  it('merges counters, maxima and histograms', () => {
    const a = entry({
      calls: 2,
      slow: 1,
      degraded: 1,
      broken: 1,
      latencyMaxMs: 9,
      histogram: [
        [1, 1],
        [9, 1],
      ],
    });
    const b = entry({
      calls: 3,
      slow: 2,
      latencyMaxMs: 4,
      histogram: [
        [0, 2],
        [9, 1],
        [200, 4],
      ],
    });
    expect(mergeEntry(a, b)).toMatchObject({
      calls: 5,
      slow: 3,
      degraded: 1,
      broken: 1,
      latencyMaxMs: 9,
      histogram: [
        [0, 2],
        [1, 1],
        [9, 2],
        [200, 4],
      ],
    });
    expect(a.histogram).toEqual([
      [1, 1],
      [9, 1],
    ]);
  });

  it("names records' address callees", () => {
    const base = {
      at: 1,
      traceId: '0123456789abcdef',
      protocol: 'http',
      method: 'GET',
      path: '/',
      status: 200,
      latencyMs: 1,
    } as const;
    const records = [
      { ...base, direction: 'outbound', caller: 'web', callee: '10.0.0.5:8080', outcome: 'success', kept: 'sampled' },
      { ...base, direction: 'outbound', caller: 'web', callee: '10.9.9.9:80', outcome: 'success', kept: 'sampled' },
      { ...base, direction: 'inbound', caller: '', callee: 'web', outcome: 'error', kept: 'error' },
    ] as const;
    const resolved = resolveRecords([...records], resolve);
    expect(resolved.map((r) => [r.caller, r.callee])).toEqual([
      ['web', 'stock'],
      ['web', '10.9.9.9:80'],
      ['', 'web'],
    ]);
    const unchanged = [records[1], records[2]];
    expect(resolveRecords(unchanged, resolve)).toBe(unchanged);
  });

  it('resolves whole stats and records frames with the index, for the agent that sent them', () => {
    const index = new PeerIndex();
    index.agentListening({ instanceId: 'stock-1', application: 'stock', host: '127.0.0.1', ports: [8080] });
    index.agentListening({ instanceId: 'web-1', application: 'web', host: '127.0.0.1', ports: [80] });
    const stats = { type: 'stats' as const, seq: 1, second: 10, dropped: 0, entries: [entry({ peer: 'localhost:8080' })] };
    expect(index.resolveFrame('web-1', stats).entries).toEqual([entry({ peer: 'stock' })]);
    const untouched = { ...stats, entries: [entry({ peer: '10.1.1.1:8080' })] };
    expect(index.resolveFrame('web-1', untouched)).toBe(untouched);
  });
});
