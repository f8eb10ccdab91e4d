import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/net.js';
import { type Child, eventually, killAll } from '../support/processes.js';
import { PROVIDER_SCRIPT, startAgentApp, StewardApi } from '../support/stats-apps.js';
import { startStewardProcess } from '../support/steward-process.js';
import { TcpBalancer } from '../support/tcp-balancer.js';

/**
 * Three server replicas behind a round-robin balancer, agents of one application spread over
 * them. The revision poll is switched off (10 min), so only the Kafka rule feed can carry a rule
 * saved on one replica to the agents of the others. One replica is then killed under traffic: its
 * agent reconnects through the balancer to another within 5 s, and the next rule reaches all.
 */

const run = Date.now().toString(36);
const APP = `replica-app-${run}`;
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

/** Agents of APP connected to each live replica, and how many acknowledged `revision`. */
async function cluster(revision: number, live = replicas) {
  let connected = 0;
  let acknowledged = 0;
  for (const r of live) {
    connected += (await r.api.request<{ summary: { connected: number } }>(`/api/applications/${APP}/agents`)).summary.connected;
    acknowledged += (await r.api.request<{ acknowledged: number }>(`/api/applications/${APP}/revisions/${revision}/acks`))
      .acknowledged;
  }
  return { connected, acknowledged };
}

beforeAll(async () => {
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const child = await startStewardProcess(port, {
      AGENT_HEARTBEAT_MS: '1000',
      AGENT_REVISION_POLL_MS: '600000',
      STATS_TOPIC: `steward.stats.replicas-${run}`,
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
    const perReplica = await Promise.all(
      replicas.map(
        async (r) =>
          (await r.api.request<{ summary: { connected: number } }>(`/api/applications/${APP}/agents`)).summary.connected,
      ),
    );
    expect(perReplica).toEqual([1, 1, 1]);
    const saved = await replicas[0]!.api.request<{ revision: number }>(`/api/applications/${APP}/rules`, {
      method: 'POST',
      json: limitRule(100),
    });
    const started = Date.now();
    await eventually(async () => ((await cluster(saved.revision)).acknowledged === 3 ? true : undefined), 10_000, 'three acks');
    console.log(`[replicas] revision ${saved.revision} acknowledged by the agents of 3 replicas in ${Date.now() - started} ms`);
  });

  it('a replica killed under traffic: its agent is back on another within 5 s, and no revision is lost', async () => {
    let calls = 0;
    let failures = 0;
    let traffic = true;
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
    const killed = replicas[1]!;
    const killedAt = Date.now();
    await killed.child.kill('SIGKILL');
    const survivors = [replicas[0]!, replicas[2]!];
    await eventually(
      async () => ((await cluster(0, survivors)).connected === 3 ? true : undefined),
      5_000,
      'three agents on the survivors',
    );
    const back = Date.now() - killedAt;
    const saved = await survivors[1]!.api.request<{ revision: number }>(`/api/applications/${APP}/rules`, {
      method: 'POST',
      json: limitRule(200),
    });
    await eventually(
      async () => ((await cluster(saved.revision, survivors)).acknowledged === 3 ? true : undefined),
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
  });
});
