import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EurekaTestRegistry } from '../support/eureka-registrations.js';
import { freePort } from '../support/net.js';
import { eventually, killAll, startNode } from '../support/processes.js';
import { stackEnv } from '../support/stack.js';
import { CONSUMER_SCRIPT, PROVIDER_SCRIPT, startAgentApp, StewardApi } from '../support/stats-apps.js';
import { startStewardProcess } from '../support/steward-process.js';

/**
 * Naming the callee of outbound calls to applications that run no agent: the consumer's agent
 * reports such a call by the address it went to, and the server names the application listening
 * there (from the registry catalog, or from another agent's hello) before the frame reaches Kafka,
 * so the dependency graph draws the caller → callee edge from the caller's own view.
 */

const run = Date.now().toString(36);
const CONSUMER = `pc-${run}`;
/** Runs no agent; known only from Eureka. */
const EUREKA_APP = `pe-${run}`;
/** Runs the agent: known from its hello. */
const AGENT_APP = `pa-${run}`;

const eureka = new EurekaTestRegistry(stackEnv.EUREKA_URLS);
let client: StewardApi;
let agentToken = '';
const started = Date.now() - 60_000;

/** An example provider without the agent; its port. */
async function plainProvider(application: string): Promise<number> {
  const child = startNode([PROVIDER_SCRIPT], { APP_NAME: application });
  return (await child.line<{ listening: number }>((v) => typeof v['listening'] === 'number')).listening;
}

beforeAll(async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  client = new StewardApi(url);
  await startStewardProcess(port, {
    AGENT_HEARTBEAT_MS: '1000',
    STATS_TOPIC: `steward.stats.peers-${run}`,
    EUREKA_FETCH_INTERVAL_MS: '1000',
    REGISTRY_DEBOUNCE_MS: '50',
  });
  agentToken = await client.agentToken(`peers-${run}`);
}, 60_000);

afterAll(async () => {
  killAll();
  await eureka.cleanup();
});

interface Graph {
  nodes: { application: string; reporting: boolean }[];
  edges: { caller: string; callee: string; source: string; calls: number; errors: number }[];
}

describe('outbound calls to applications without an agent', () => {
  it('name the callee from the registry catalog or another agent, and an unknown address stays an address', async () => {
    const eurekaPort = await plainProvider(EUREKA_APP);
    const unknownPort = await plainProvider(`pu-${run}`);
    await eureka.register({
      app: EUREKA_APP.toUpperCase(),
      instanceId: `127.0.0.1:${EUREKA_APP}:${eurekaPort}`,
      ip: '127.0.0.1',
      port: eurekaPort,
    });
    const agentProvider = await startAgentApp(PROVIDER_SCRIPT, AGENT_APP, { serverUrl: client.url, token: agentToken });
    const consumer = await startAgentApp(
      CONSUMER_SCRIPT,
      CONSUMER,
      { serverUrl: client.url, token: agentToken },
      { STEWARD_RECORD_SAMPLE: '100%' },
    );
    await eventually(
      async () => {
        const app = await client
          .request<{ instanceCount: number }>(`/api/registry/applications/${EUREKA_APP}`)
          .catch(() => undefined);
        return app?.instanceCount === 1 ? true : undefined;
      },
      30_000,
      'the Eureka instance in the catalog',
    );
    await client.waitForAgents(AGENT_APP, 1);
    await client.waitForAgents(CONSUMER, 1);
    // The provider's agent announces its port once it listens.
    await new Promise((r) => setTimeout(r, 500));

    // The consumer calls whatever absolute URL `path` names.
    const callTo = async (base: string, n: number) => {
      for (let i = 0; i < n; i++) {
        const res = await fetch(`${consumer.url}/call?path=${encodeURIComponent(`${base}/api/items/${i}`)}`);
        expect(((await res.json()) as { status: number }).status).toBe(200);
      }
    };
    await callTo(`http://127.0.0.1:${eurekaPort}`, 3);
    await callTo(agentProvider.url, 2);
    await callTo(`http://127.0.0.1:${unknownPort}`, 1);
    await client.totalsReach(
      CONSUMER,
      'outbound',
      { calls: 6, successes: 6, errors: 0, limited: 0, broken: 0, degraded: 0 },
      { from: started },
    );

    const unknown = `127.0.0.1:${unknownPort}`;
    const graph = await client.request<Graph>(`/api/stats/graph?from=${started}&to=${Date.now() + 60_000}&resolution=1m`);
    const mine = graph.edges.filter((e) => e.caller === CONSUMER).map(({ callee, source, calls }) => ({ callee, source, calls }));
    expect(mine).toEqual(
      [
        { callee: EUREKA_APP, source: 'outbound', calls: 3 },
        { callee: AGENT_APP, source: 'outbound', calls: 2 },
        { callee: unknown, source: 'outbound', calls: 1 },
      ].sort((a, b) => (a.callee < b.callee ? -1 : 1)),
    );
    expect(graph.nodes.find((n) => n.application === EUREKA_APP)).toMatchObject({ reporting: false });
    expect(graph.nodes.find((n) => n.application === unknown)).toMatchObject({ reporting: false });

    // Call records name the callee the same way.
    await eventually(
      async () => {
        const page = await client.request<{ items: { direction: string; callee: string }[] }>(
          `/api/stats/records?application=${CONSUMER}&from=${started}&pageSize=100`,
        );
        const callees = page.items
          .filter((r) => r.direction === 'outbound')
          .map((r) => r.callee)
          .sort();
        return callees.length === 6 ? callees : undefined;
      },
      20_000,
      "the consumer's call records",
    ).then((callees) =>
      expect(callees).toEqual([...Array<string>(3).fill(EUREKA_APP), ...Array<string>(2).fill(AGENT_APP), unknown].sort()),
    );
  }, 120_000);
});
