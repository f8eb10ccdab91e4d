import { Partitioners } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STATS_PARTITIONS } from '../../src/stats/stats-aggregator.js';
import { ADMIN_TOKEN } from '../support/app.js';
import { freePort } from '../support/net.js';
import { type Child, eventually, killAll } from '../support/processes.js';
import { noCalls, PROVIDER_SCRIPT, startAgentApp, StewardApi } from '../support/stats-apps.js';
import { startStewardProcess } from '../support/steward-process.js';
import { TcpBalancer } from '../support/tcp-balancer.js';

/**
 * Three server replicas behind a round-robin balancer, agents of one application spread over
 * them. The revision poll is switched off (10 min), so only the Kafka rule feed can carry a rule
 * saved on one replica to the agents of the others; each replica's agents view covers all three
 * (through the agents topic). One replica is then killed under traffic: its agent reconnects
 * through the balancer to another within 5 s, the next rule reaches all, and the statistics (the
 * three replicas aggregate as one consumer group) count every call exactly once.
 */

const run = Date.now().toString(36);
const APP = `replica-app-${run}`;
const STATS_TOPIC = `steward.stats.replicas-${run}`;
const replicas: { port: number; child: Child; api: StewardApi }[] = [];
let balancer: TcpBalancer;
const providers: string[] = [];

const limitRule = (burst: number) => ({
  rule: {
    kind: 'limit',
    target: { direction: 'inbound', resource: { type: 'http', path: '/api/**' } },
    limit: { mode: 'qps', permitsPerSec: 1000, burst },
  },
});

interface AgentsView {
  summary: { connected: number };
  agents: { instanceId: string; replica: string; connected: boolean }[];
}

/** Agents of APP connected and acknowledging `revision`, as one replica sees the cluster. */
async function cluster(revision: number, via = replicas[0]!) {
  const { connected } = await via.api.request<{ connected: number }>(
    `/api/applications/${APP}/revisions/${revision}/acks?instances=false`,
  );
  const { acknowledged } = await via.api.request<{ acknowledged: number }>(`/api/applications/${APP}/revisions/${revision}/acks`);
  return { connected, acknowledged };
}

/** The stats topic's partition of an application's frames (kafkajs' default partitioner, keyed by application). */
function partitionOf(application: string): number {
  const partitionMetadata = Array.from({ length: STATS_PARTITIONS }, (_, partitionId) => ({
    partitionId,
    leader: 0,
    replicas: [0],
    isr: [0],
    partitionErrorCode: 0,
  }));
  return Partitioners.DefaultPartitioner()({ topic: STATS_TOPIC, partitionMetadata, message: { key: application, value: null } });
}

/** Index of the replica whose stats aggregator owns `partition` (its metrics say). */
async function aggregatorOf(partition: number): Promise<number> {
  const owned = (metrics: string) => metrics.includes(`steward_stats_aggregator_partitions{partition="${partition}"} 1`);
  return eventually(
    async () => {
      for (const [i, r] of replicas.entries()) {
        const res = await fetch(`${r.api.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
        if (owned(await res.text())) return i;
      }
      return undefined;
    },
    30_000,
    `the aggregator of partition ${partition}`,
  );
}

/** The replica's own id, as it names itself among the replicas it knows. */
async function replicaId(via: (typeof replicas)[number]): Promise<string> {
  const { replicas: known } = await via.api.request<{ replicas: { replica: string; self: boolean }[] }>('/api/agents');
  return known.find((r) => r.self)!.replica;
}

/** The replica each connected agent's session is on, as `via` sees it. */
async function sessions(via: (typeof replicas)[number]): Promise<string[]> {
  const view = await via.api.request<AgentsView>(`/api/applications/${APP}/agents`);
  return view.agents.filter((a) => a.connected).map((a) => a.replica);
}

beforeAll(async () => {
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const child = await startStewardProcess(port, {
      AGENT_HEARTBEAT_MS: '1000',
      AGENT_REVISION_POLL_MS: '600000',
      STATS_TOPIC,
    });
    replicas.push({ port, child, api: new StewardApi(`http://127.0.0.1:${port}`) });
  }
  balancer = await new TcpBalancer(replicas.map((r) => r.port)).start();
  const token = await replicas[0]!.api.agentToken(`replicas-${run}`);
  for (let i = 0; i < 3; i++) providers.push((await startAgentApp(PROVIDER_SCRIPT, APP, { serverUrl: balancer.url, token })).url);
  await eventually(async () => ((await cluster(0)).connected === 3 ? true : undefined), 20_000, 'three agents connected');
}, 120_000);

afterAll(async () => {
  killAll();
  await balancer?.stop();
});

describe('several server replicas', () => {
  it('spreads the agents, and a rule saved on one replica reaches the agents of all of them', async () => {
    // Every replica sees the three agents, one on each replica.
    for (const via of replicas) {
      await eventually(async () => ((await sessions(via)).length === 3 ? true : undefined), 15_000, 'the whole cluster');
      expect(new Set(await sessions(via)).size).toBe(3);
    }
    const saved = await replicas[0]!.api.request<{ revision: number }>(`/api/applications/${APP}/rules`, {
      method: 'POST',
      json: limitRule(100),
    });
    const started = Date.now();
    // Acknowledged by the agents of all three, as the replica that saved it sees it.
    await eventually(async () => ((await cluster(saved.revision)).acknowledged === 3 ? true : undefined), 10_000, 'three acks');
    console.log(`[replicas] revision ${saved.revision} acknowledged by the agents of 3 replicas in ${Date.now() - started} ms`);
  });

  it('a replica killed under traffic: its agent is back on another within 5 s, no revision is lost, statistics stay exact', async () => {
    let calls = 0;
    let failures = 0;
    let traffic = true;
    const from = Date.now();
    const load = (async () => {
      while (traffic) {
        for (const url of providers) {
          const res = await fetch(`${url}/api/items/${calls}`).catch(() => undefined);
          calls += 1;
          if (!res || res.status >= 500) failures += 1;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    // Some calls are counted before the kill.
    await eventually(
      async () => ((await replicas[0]!.api.totals(APP, 'inbound', from)).calls > 0 ? true : undefined),
      30_000,
      'first calls counted',
    );
    // The replica whose aggregator owns APP's partition of the stats topic is the one killed.
    const owner = await aggregatorOf(partitionOf(APP));
    const killed = replicas[owner]!;
    const survivors = replicas.filter((r) => r !== killed);
    const survivorIds = await Promise.all(survivors.map(replicaId));
    const killedAt = Date.now();
    await killed.child.kill('SIGKILL');
    // Their own sessions, as one survivor sees the cluster: the killed replica's records stay in the
    // view until they expire, but the newer sessions win at once.
    await eventually(
      async () => {
        const on = await sessions(survivors[0]!);
        return on.length === 3 && on.every((id) => survivorIds.includes(id)) ? true : undefined;
      },
      5_000,
      'three agents on the survivors',
    );
    const back = Date.now() - killedAt;
    const saved = await survivors[1]!.api.request<{ revision: number }>(`/api/applications/${APP}/rules`, {
      method: 'POST',
      json: limitRule(200),
    });
    await eventually(
      async () => ((await cluster(saved.revision, survivors[0])).acknowledged === 3 ? true : undefined),
      10_000,
      'three acks after the kill',
    );
    traffic = false;
    await load;
    console.log(
      `[replicas] agent reconnected ${back} ms after its replica was killed; ${calls} calls meanwhile, ${failures} failed`,
    );
    // The apps never depended on the server: every call was answered.
    expect(failures).toBe(0);
    // Every call counted once: the killed replica's unacknowledged frames were sent again to the
    // survivors, and its aggregator's partitions moved to theirs (after its Kafka session expired).
    await survivors[0]!.api.totalsReach(APP, 'inbound', { ...noCalls(), calls, successes: calls }, { from, timeoutMs: 120_000 });
    console.log(`[replicas] ${calls} calls counted exactly once across the kill, ${Date.now() - killedAt} ms after it`);
  });
});
