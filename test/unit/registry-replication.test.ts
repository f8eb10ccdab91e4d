import { AssignerProtocol, type Cluster } from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import { chooseLeaseHolder, leaseAssigner } from '../../src/common/kafka-leader-election.js';
import { ServiceCatalog } from '../../src/registry-bridge/catalog.js';
import {
  applyToCatalog,
  type CatalogRecord,
  CatalogTopicState,
  decodeRecord,
  encodeRecord,
  reconcileCatalog,
} from '../../src/registry-bridge/catalog-records.js';
import type { Registration } from '../../src/registry-bridge/registration.js';
import { replaceAllRecords, ReplicatingSink } from '../../src/registry-bridge/replicating-sink.js';

const ZK = 'zookeeper:zk:2181';

function reg(key: string, overrides: Partial<Registration> = {}): Registration {
  return {
    key,
    source: ZK,
    sourceKind: 'zookeeper',
    application: 'orders',
    kind: 'dubbo',
    host: `10.0.0.${key.length}`,
    port: 20880,
    status: 'UP',
    weight: 100,
    services: [
      {
        key: 'com.a.Orders',
        interface: 'com.a.Orders',
        group: '',
        version: '',
        protocol: 'dubbo',
        methods: ['get'],
        side: 'provider',
      },
    ],
    metadata: { release: '3.3.6' },
    ...overrides,
  };
}

const catalogs: ServiceCatalog[] = [];
function newCatalog(): ServiceCatalog {
  const catalog = new ServiceCatalog({ debounceMs: 5 });
  catalogs.push(catalog);
  return catalog;
}
afterEach(() => catalogs.splice(0).forEach((c) => c.close()));

/** Records as a follower reads them: encoded, sent, decoded. */
function overTheWire(records: CatalogRecord[]): CatalogRecord[] {
  return records.map((record) => {
    const { key, value } = encodeRecord(record);
    const decoded = decodeRecord(Buffer.from(key), value === null ? null : Buffer.from(value));
    if (!decoded.ok) throw new Error(decoded.reason);
    return decoded.record;
  });
}

/** A leader (tee over its catalog) and what it published. */
function leader(topic = new CatalogTopicState()) {
  const catalog = newCatalog();
  const published: CatalogRecord[][] = [];
  const sink = new ReplicatingSink(catalog, topic, (records) => published.push(records));
  return { catalog, sink, published, all: () => published.flat() };
}

describe('catalog topic records', () => {
  it('encode and decode every kind of record, tombstones included', () => {
    const records: CatalogRecord[] = [
      {
        type: 'registration',
        source: ZK,
        key: '/dubbo/com.a.Orders/providers/dubbo%3A%2F%2F10.0.0.1',
        registration: reg('/dubbo/com.a.Orders/providers/dubbo%3A%2F%2F10.0.0.1'),
      },
      { type: 'registration', source: ZK, key: '/dubbo/x', registration: null },
      { type: 'health', source: 'eureka', health: { reachable: false, error: 'connection refused' } },
      { type: 'health', source: 'eureka', health: { reachable: true } },
      { type: 'health', source: 'eureka', health: null },
      { type: 'leader', leader: { replica: 'pod-1-42-abcd', since: 1_700_000_000_000 } },
      { type: 'leader', leader: null },
    ];
    expect(overTheWire(records)).toEqual(records);
    expect(encodeRecord(records[0]!).key).toBe(`${ZK}\u0000/dubbo/com.a.Orders/providers/dubbo%3A%2F%2F10.0.0.1`);
    expect(encodeRecord(records[2]!).key).toBe('health\u0000eureka');
    expect(encodeRecord(records[1]!).value).toBeNull();
  });

  it.each([
    ['a key without a source', 'no-separator', '{"v":1}', 'key is not'],
    ['a value that is not JSON', `${ZK}\u0000/k`, '{"v":1,', 'not JSON'],
    ['another version', `${ZK}\u0000/k`, JSON.stringify({ v: 2, registration: reg('/k') }), 'v:'],
    [
      'a registration under another key',
      `${ZK}\u0000/other`,
      JSON.stringify({ v: 1, registration: reg('/k') }),
      'does not match',
    ],
    [
      'a port out of range',
      `${ZK}\u0000/k`,
      JSON.stringify({ v: 1, registration: reg('/k', { port: 70_000 }) }),
      'registration.port',
    ],
    [
      'an unknown status',
      `${ZK}\u0000/k`,
      JSON.stringify({ v: 1, registration: { ...reg('/k'), status: 'GONE' } }),
      'registration.status',
    ],
    ['health without reachable', 'health\u0000eureka', '{"v":1,"health":{}}', 'health.reachable'],
    ['a leader without a replica', 'leader', '{"v":1,"leader":{"since":1}}', 'leader.replica'],
  ])('refuses %s, with a reason', (_what, key, value, reason) => {
    const decoded = decodeRecord(Buffer.from(key), Buffer.from(value));
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) expect(decoded.reason).toContain(reason);
  });

  it('a topic state follows records and copies independently', () => {
    const state = new CatalogTopicState();
    state.apply({ type: 'registration', source: ZK, key: '/a', registration: reg('/a') });
    state.apply({ type: 'health', source: 'eureka', health: { reachable: true } });
    const copy = state.clone();
    copy.apply({ type: 'registration', source: ZK, key: '/a', registration: null });
    expect(state.registration(ZK, '/a')).toEqual(reg('/a'));
    expect(copy.registration(ZK, '/a')).toBeUndefined();
    expect(copy.sources()).toEqual(['eureka']);
    expect(state.sources()).toEqual(['eureka', ZK]);
  });
});

describe("the leader's replicating sink", () => {
  it('publishes a full sync as tombstones for what is gone and upserts for what is new or changed, nothing else', () => {
    const topic = new CatalogTopicState();
    for (const key of ['/kept', '/changed', '/gone'])
      topic.apply({ type: 'registration', source: ZK, key, registration: reg(key) });
    topic.apply({ type: 'registration', source: 'eureka', key: 'APP/1', registration: reg('APP/1', { source: 'eureka' }) });
    const records = replaceAllRecords(topic, ZK, [reg('/kept'), reg('/changed', { status: 'DOWN' }), reg('/new')]);
    expect(records.map((r) => [r.type === 'registration' && r.key, r.type === 'registration' && r.registration?.status])).toEqual(
      [
        ['/gone', undefined],
        ['/changed', 'DOWN'],
        ['/new', 'UP'],
      ],
    );
    // Equal content, another object (as read back from the topic): unchanged.
    expect(replaceAllRecords(topic, ZK, [reg('/kept'), reg('/changed'), reg('/gone')])).toEqual([]);
  });

  it('sends a burst of 25,000 registrations in one call and a resync of them unchanged as nothing', () => {
    const { sink, published, catalog } = leader();
    const burst = Array.from({ length: 25_000 }, (_, i) =>
      reg(`/dubbo/s${i % 50}/providers/p${i}`, { host: `10.1.${i >> 8}.${i & 255}` }),
    );
    sink.replaceAll(ZK, burst);
    expect(published).toHaveLength(1);
    expect(published[0]).toHaveLength(25_000);
    expect(catalog.size().registrations).toBe(25_000);
    sink.replaceAll(
      ZK,
      burst.map((r) => ({ ...r })),
    );
    expect(published).toHaveLength(1);
  });

  it('applies each call locally and publishes only what changes the topic', () => {
    const { sink, catalog, all } = leader();
    sink.upsert(reg('/a'));
    sink.upsert(reg('/a'));
    sink.remove(ZK, '/never-seen');
    sink.sourceHealth(ZK, { reachable: false, error: 'disconnected' });
    sink.sourceHealth(ZK, { reachable: false, error: 'disconnected' });
    sink.badInput(ZK, 'dubbo-url', 'bad');
    sink.remove(ZK, '/a');
    expect(all()).toEqual([
      { type: 'registration', source: ZK, key: '/a', registration: reg('/a') },
      { type: 'health', source: ZK, health: { reachable: false, error: 'disconnected' } },
      { type: 'registration', source: ZK, key: '/a', registration: null },
    ]);
    expect(catalog.size().registrations).toBe(0);
    expect(catalog.sources()[0]).toMatchObject({ source: ZK, reachable: false, badInput: { 'dubbo-url': 1 } });
  });

  it('retires the sources of a previous leader that this one does not read', () => {
    const topic = new CatalogTopicState();
    topic.apply({ type: 'registration', source: 'eureka', key: 'APP/1', registration: reg('APP/1', { source: 'eureka' }) });
    topic.apply({ type: 'health', source: 'eureka', health: { reachable: true } });
    topic.apply({ type: 'registration', source: ZK, key: '/a', registration: reg('/a') });
    const { sink, all } = leader(topic);
    const dropped: string[] = [];
    sink.retireSourcesExcept([ZK], (source) => dropped.push(source));
    expect(dropped).toEqual(['eureka']);
    expect(all()).toEqual([
      { type: 'registration', source: 'eureka', key: 'APP/1', registration: null },
      { type: 'health', source: 'eureka', health: null },
    ]);
    expect(sink.expected.sources()).toEqual([ZK]);
  });
});

describe("a follower's catalog", () => {
  it('is the leader catalog, built from the records alone', () => {
    const lead = leader();
    lead.sink.replaceAll(ZK, [reg('/a'), reg('/b', { host: '10.9.9.9' })]);
    lead.sink.upsert(reg('/c', { application: 'stock' }));
    lead.sink.remove(ZK, '/b');
    lead.sink.sourceHealth(ZK, { reachable: false, error: 'session expired' });
    lead.sink.replaceAll('eureka', [reg('APP/1', { source: 'eureka', sourceKind: 'eureka', kind: 'http', port: 8080 })]);
    const follower = newCatalog();
    for (const record of overTheWire(lead.all())) applyToCatalog(follower, record);
    expect(follower.instances({}, { limit: 100 })).toEqual(lead.catalog.instances({}, { limit: 100 }));
    expect(follower.sources().map(({ source, reachable, registrations }) => ({ source, reachable, registrations }))).toEqual(
      lead.catalog.sources().map(({ source, reachable, registrations }) => ({ source, reachable, registrations })),
    );
    applyToCatalog(follower, { type: 'health', source: 'eureka', health: null });
    expect(follower.sources().map((s) => s.source)).toEqual([ZK]);
    expect(follower.instances({ sourceKind: 'eureka' }).total).toBe(0);
  });

  it('is reconciled to the topic when this replica stops reading the registries itself', () => {
    const topic = new CatalogTopicState();
    topic.apply({ type: 'registration', source: ZK, key: '/a', registration: reg('/a', { status: 'DOWN' }) });
    topic.apply({ type: 'health', source: ZK, health: { reachable: true } });
    const catalog = newCatalog();
    // Read while alone: /a as UP, /local which the topic never had, and a source the leader does not read.
    catalog.replaceAll(ZK, [reg('/a'), reg('/local')]);
    catalog.sourceHealth(ZK, { reachable: false, error: 'x' });
    catalog.upsert(reg('APP/1', { source: 'eureka' }));
    reconcileCatalog(catalog, topic);
    expect(catalog.instances().items.map((i) => [i.host, i.status])).toEqual([['10.0.0.2', 'DOWN']]);
    expect(catalog.sources().map(({ source, reachable }) => ({ source, reachable }))).toEqual([{ source: ZK, reachable: true }]);
  });
});

describe('the lease assignment', () => {
  it('stays with the member that holds it; else goes to the first member id', () => {
    const claim = (memberId: string, leading = false) => ({ memberId, claim: { leading } });
    expect(chooseLeaseHolder([claim('c'), claim('b', true), claim('a')])).toBe('b');
    expect(chooseLeaseHolder([claim('c'), claim('a'), claim('b')])).toBe('a');
    expect(chooseLeaseHolder([claim('c', true), claim('b', true)])).toBe('b');
    expect(chooseLeaseHolder([])).toBeUndefined();
  });

  it('gives every partition of the lease topic to one member and nothing to the others', async () => {
    const cluster = { findTopicPartitionMetadata: () => [{ partitionId: 0 }] } as unknown as Cluster;
    const member = (leading: boolean) =>
      leaseAssigner(() => ({ leading }))({ cluster, groupId: 'g', logger: undefined as never }).protocol({ topics: ['lease'] })
        .metadata;
    const assigner = leaseAssigner(() => ({ leading: false }))({ cluster, groupId: 'g', logger: undefined as never });
    const assignments = await assigner.assign({
      members: [
        { memberId: 'a', memberMetadata: member(false) },
        { memberId: 'b', memberMetadata: member(true) },
        { memberId: 'c', memberMetadata: Buffer.from('garbage') },
      ],
      topics: ['lease'],
    });
    const decoded = Object.fromEntries(
      assignments.map((a) => [a.memberId, AssignerProtocol.MemberAssignment.decode(a.memberAssignment)?.assignment]),
    );
    expect(decoded).toEqual({ a: {}, b: { lease: [0] }, c: {} });
  });
});
