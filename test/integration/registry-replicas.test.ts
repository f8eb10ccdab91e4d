import { execFileSync } from 'node:child_process';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/net.js';
import { type Child, eventually, killAll } from '../support/processes.js';
import { stackEnv } from '../support/stack.js';
import { StewardApi } from '../support/stats-apps.js';
import { startStewardProcess } from '../support/steward-process.js';
import { javaFormEncode, ZkClient } from '../support/zk.js';

/**
 * Three server replicas share one registry bridge: one of them, elected through a Kafka consumer
 * group, reads ZooKeeper and Eureka, and every replica holds the catalog it publishes on the
 * compacted catalog topic. The leader is then killed: another replica takes over and reads
 * ZooKeeper from where the first left, tombstoning what went away while no replica was reading.
 * Each run has its own ZooKeeper root, election group and topics.
 */

const run = `t${Date.now().toString(36)}`;
const ROOT = `steward-bridge-${run}`;
const IFACE = 'com.example.bridge.PriceService';
const APP = `bridge-${run}`;
const ZK_SOURCE = `zookeeper:${stackEnv.ZOOKEEPER_CONNECT}`;
const ENV = {
  ZOOKEEPER_DUBBO_ROOTS: ROOT,
  REGISTRY_BRIDGE_GROUP: `steward-bridge.${run}`,
  REGISTRY_BRIDGE_LEASE_TOPIC: `steward.bridge.lease.${run}`,
  REGISTRY_CATALOG_TOPIC: `steward.catalog.${run}`,
  REGISTRY_DEBOUNCE_MS: '50',
  STATS_TOPIC: `steward.stats.bridge-${run}`,
  STATS_AGGREGATOR: 'off',
};

interface Replica {
  port: number;
  child: Child;
  api: StewardApi;
}
interface BridgeStatus {
  replica: string;
  role: 'leader' | 'follower' | 'waiting' | 'standalone';
  leader: { replica: string } | null;
  readingHere: string[];
}

const replicas: Replica[] = [];
let zk: ZkClient;

async function startReplica(): Promise<Replica> {
  const port = await freePort();
  const child = await startStewardProcess(port, ENV);
  const replica = { port, child, api: new StewardApi(`http://127.0.0.1:${port}`) };
  replicas.push(replica);
  return replica;
}

const status = (r: Replica) => r.api.request<BridgeStatus>('/api/registry/bridge');

/** The one leader among `live` once the others follow it, or undefined. */
async function settledLeader(live: Replica[]): Promise<Replica | undefined> {
  const states = await Promise.all(live.map(status));
  const leaders = live.filter((_, i) => states[i]!.role === 'leader');
  if (leaders.length !== 1 || states.some((s) => s.role !== 'leader' && s.role !== 'follower')) return undefined;
  const leader = states[live.indexOf(leaders[0]!)]!.replica;
  return states.every((s) => s.leader?.replica === leader) ? leaders[0] : undefined;
}

/** The provider hosts of APP each replica's catalog lists, when they all list `hosts`. */
async function everywhere(live: Replica[], hosts: string[]): Promise<true | undefined> {
  for (const r of live) {
    const page = await r.api.request<{ items: { host: string }[] }>(`/api/registry/instances?application=${APP}`);
    if (JSON.stringify(page.items.map((i) => i.host).sort()) !== JSON.stringify([...hosts].sort())) return undefined;
  }
  return true;
}

const providerPath = (host: string) =>
  `/${ROOT}/${IFACE}/providers/${javaFormEncode(
    `dubbo://${host}:20880/${IFACE}?anyhost=true&application=${APP}&dubbo=2.0.2&interface=${IFACE}&methods=price,quote&side=provider&timestamp=${Date.now()}`,
  )}`;

/** Server processes holding a ZooKeeper connection, by pid (`ss` names the process of each socket). */
function zookeeperClients(): Map<number, number> {
  const port = stackEnv.ZOOKEEPER_CONNECT.split(':')[1];
  const lines = execFileSync('ss', ['-tnpH', `dport = :${port}`], { encoding: 'utf8' }).split('\n');
  const byPid = new Map<number, number>();
  for (const line of lines) {
    for (const match of line.matchAll(/pid=(\d+)/g)) byPid.set(Number(match[1]), (byPid.get(Number(match[1])) ?? 0) + 1);
  }
  return byPid;
}

function readersAmong(live: Replica[]): Replica[] {
  const clients = zookeeperClients();
  return live.filter((r) => (clients.get(r.child.child.pid!) ?? 0) > 0);
}

beforeAll(async () => {
  zk = await ZkClient.connect(stackEnv.ZOOKEEPER_CONNECT);
  await zk.create(providerPath('10.77.0.1'));
  for (let i = 0; i < 3; i++) await startReplica();
}, 120_000);

afterAll(async () => {
  killAll();
  await zk?.removeTree(`/${ROOT}`).catch(() => undefined);
  zk?.close();
  const admin = new Kafka({ brokers: [stackEnv.KAFKA_BROKERS], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [ENV.REGISTRY_BRIDGE_LEASE_TOPIC, ENV.REGISTRY_CATALOG_TOPIC] }).catch(() => undefined);
  await admin.disconnect();
});

const live = () => replicas.filter((r) => r.child.child.exitCode === null && r.child.child.signalCode === null);

describe('the registry bridge across replicas', () => {
  let leader: Replica;

  it('elects one replica, the only one reading ZooKeeper and Eureka, and every replica holds its catalog', async () => {
    leader = await eventually(() => settledLeader(replicas), 30_000, 'one leader, two followers');
    const states = await Promise.all(replicas.map(status));
    for (const [i, s] of states.entries()) {
      expect(s.readingHere, `replica ${i} reads`).toEqual(replicas[i] === leader ? [ZK_SOURCE, 'eureka'] : []);
    }
    await eventually(() => everywhere(replicas, ['10.77.0.1']), 15_000, 'the first provider in every catalog');
    expect(readersAmong(replicas)).toEqual([leader]);

    const metrics = await Promise.all(replicas.map(async (r) => (await fetch(`${r.api.url}/metrics`)).text()));
    const leading = metrics.map((text) => Number(/^steward_registry_bridge_leader (\d)/m.exec(text)?.[1]));
    expect(leading.reduce((a, b) => a + b, 0)).toBe(1);

    // A follower names the replica that reads each source.
    const follower = replicas.find((r) => r !== leader)!;
    const sources = await follower.api.request<{ source: string; readBy?: string; stats?: object }[]>('/api/registry/sources');
    const leaderId = (await status(leader)).replica;
    expect(sources.find((s) => s.source === ZK_SOURCE)).toMatchObject({ readBy: leaderId, registrations: 1 });
    expect(sources.every((s) => s.stats === undefined)).toBe(true);

    const written = Date.now();
    await zk.create(providerPath('10.77.0.2'));
    await eventually(() => everywhere(replicas, ['10.77.0.1', '10.77.0.2']), 15_000, 'a new provider in every catalog');
    console.log(`[registry-replicas] a provider registered reached the catalogs of 3 replicas in ${Date.now() - written} ms`);
  });

  it('hands the registries to another replica within 20 s of a SIGKILL, which tombstones what went away meanwhile', async () => {
    const survivors = replicas.filter((r) => r !== leader);
    const first = (await zk.children(`/${ROOT}/${IFACE}/providers`)).find((name) => name.includes('10.77.0.1'))!;
    const killedAt = Date.now();
    await leader.child.kill('SIGKILL');
    // While no replica reads ZooKeeper: one provider goes, one comes.
    await zk.removeTree(`/${ROOT}/${IFACE}/providers/${first}`);
    await zk.create(providerPath('10.77.0.3'));

    const next = await eventually(() => settledLeader(survivors), 25_000, 'a new leader among the survivors');
    const failover = Date.now() - killedAt;
    await eventually(() => everywhere(survivors, ['10.77.0.2', '10.77.0.3']), 15_000, 'the changes in both survivors');
    const converged = Date.now() - killedAt;
    console.log(
      `[registry-replicas] leader killed: new leader after ${failover} ms, both catalogs current after ${converged} ms`,
    );
    expect(failover).toBeLessThan(20_000);
    expect(readersAmong(survivors)).toEqual([next]);
    leader = next;

    // The new leader's live watches: a provider added, then removed.
    const path = providerPath('10.77.0.4');
    await zk.create(path);
    await eventually(
      () => everywhere(survivors, ['10.77.0.2', '10.77.0.3', '10.77.0.4']),
      15_000,
      'a provider added after the failover',
    );
    await zk.removeTree(path);
    await eventually(() => everywhere(survivors, ['10.77.0.2', '10.77.0.3']), 15_000, 'a provider removed after the failover');
  });

  it('gives a replica that joins later the whole catalog from the topic, without reading the registries', async () => {
    const joined = await startReplica();
    await eventually(() => everywhere([joined], ['10.77.0.2', '10.77.0.3']), 15_000, 'the catalog on a new replica');
    // The lease is sticky: a member joining does not move it.
    expect(await eventually(() => settledLeader(live()), 20_000, 'the same leader, one more follower')).toBe(leader);
    expect((await status(joined)).readingHere).toEqual([]);
    expect(readersAmong(live())).toEqual([leader]);
  });

  it('hands the registries over within seconds when the leader shuts down (SIGTERM, as in a rolling deploy)', async () => {
    const others = live().filter((r) => r !== leader);
    const stoppedAt = Date.now();
    const exited = leader.child.kill('SIGTERM');
    const next = await eventually(() => settledLeader(others), 15_000, 'a new leader after a shutdown');
    console.log(`[registry-replicas] leader shut down: new leader after ${Date.now() - stoppedAt} ms`);
    expect((await exited).code).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);
    await eventually(() => everywhere(live(), ['10.77.0.2', '10.77.0.3']), 15_000, 'the catalog after the handover');
    expect(readersAmong(live())).toEqual([next]);
  });

  it('lets a replica that cannot reach Kafka read the registries itself after REGISTRY_BRIDGE_FALLBACK_MS', async () => {
    const port = await freePort();
    const started = Date.now();
    const child = await startStewardProcess(port, {
      ...ENV,
      KAFKA_BROKERS: `127.0.0.1:${await freePort()}`,
      REGISTRY_BRIDGE_FALLBACK_MS: '3000',
    });
    const alone: Replica = { port, child, api: new StewardApi(`http://127.0.0.1:${port}`) };
    expect((await status(alone)).role).toBe('waiting');
    await eventually(() => everywhere([alone], ['10.77.0.2', '10.77.0.3']), 20_000, 'the catalog read alone');
    console.log(`[registry-replicas] without Kafka: catalog read alone ${Date.now() - started} ms after start`);
    expect(await status(alone)).toMatchObject({ role: 'standalone', readingHere: [ZK_SOURCE, 'eureka'] });
  });
});
