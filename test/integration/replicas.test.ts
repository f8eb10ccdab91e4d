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
/** Calls made to the providers by this file (all counted by their agents), and those that failed. */
const made = { calls: 0, failures: 0 };
const suiteStart = Date.now();

async function call(provider: string, id: string): Promise<void> {
  const res = await fetch(`${provider}/api/items/${id}`).catch(() => undefined);
  made.calls += 1;
  if (!res || res.status >= 500) made.failures += 1;
}
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

/** Inbound calls of APP in the first live second with any, from a replica's `/api/stats/live`. */
async function liveCalls(url: string, signal: AbortSignal): Promise<number> {
  const res = await fetch(`${url}/api/stats/live?application=${APP}`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    signal,
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    for (const line of text.split('\n')) {
      if (!line.startsWith('data: ')) continue;
      const data = JSON.parse(line.slice(6)) as { inbound?: { calls: number } };
      if ((data.inbound?.calls ?? 0) > 0) return data.inbound!.calls;
    }
  }
  throw new Error(`no live second of ${APP} from ${url}`);
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

  it("streams an application's live seconds from every replica, whichever aggregator counts it", async () => {
    const owner = await aggregatorOf(partitionOf(APP));
    const controller = new AbortController();
    const streams = replicas.map((r) => liveCalls(r.api.url, controller.signal));
    const load = setInterval(() => void call(providers[0]!, 'live'), 50);
    try {
      const calls = await Promise.all(streams);
      console.log(
        `[replicas] live seconds of ${APP} (aggregated by replica ${owner}) on every replica: ${calls.join(', ')} calls`,
      );
      for (const n of calls) expect(n).toBeGreaterThan(0);
    } finally {
      clearInterval(load);
      controller.abort();
    }
  });

  it('a replica killed under traffic: its agent is back on another within 5 s, no revision is lost, statistics stay exact', async () => {
    const before = made.calls;
    let traffic = true;
    const load = (async () => {
      while (traffic) {
        for (const url of providers) await call(url, String(made.calls));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    // Some calls are counted before the kill.
    await eventually(
      async () => ((await replicas[0]!.api.totals(APP, 'inbound', suiteStart)).calls > before ? true : undefined),
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
      `[replicas] agent reconnected ${back} ms after its replica was killed; ${made.calls - before} calls meanwhile, ${made.failures} failed`,
    );
    // The apps never depended on the server: every call was answered.
    expect(made.failures).toBe(0);
    // Every call counted once: the killed replica's unacknowledged frames were sent again to the
    // survivors, and its aggregator's partitions moved to theirs (after its Kafka session expired).
    const { calls } = made;
    await survivors[0]!.api.totalsReach(
      APP,
      'inbound',
      { ...noCalls(), calls, successes: calls },
      { from: suiteStart, timeoutMs: 120_000 },
    );
    console.log(`[replicas] all ${calls} calls counted exactly once, ${Date.now() - killedAt} ms after the kill`);
  });
});
