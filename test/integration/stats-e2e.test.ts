import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/net.js';
import { type Child, eventually, killAll } from '../support/processes.js';
import { CONSUMER_SCRIPT, type CallTotals, PROVIDER_SCRIPT, startAgentApp, StewardApi } from '../support/stats-apps.js';
import { startStewardProcess } from '../support/steward-process.js';

/**
 * Call statistics end to end: real Node apps with the agent preloaded make a known number of calls
 * with known outcomes; the agents' batches go through the server into Kafka, the aggregator writes
 * them to the database, and the API's totals equal the calls exactly — also when the server is away
 * for a while (the agents buffer) and comes back. (More faults: stats-faults.test.ts.)
 */

const run = Date.now().toString(36);
const PROV = `sp-${run}`;
const CONS = `sc-${run}`;

let port = 0;
let url = '';
let server: Child;
let agentToken = '';
const started = Date.now() - 60_000;
let client: StewardApi;

async function startServer(): Promise<void> {
  server = await startStewardProcess(port, { AGENT_HEARTBEAT_MS: '1000', STATS_TOPIC: `steward.stats.e2e-${run}` });
}

const api = <T>(path: string, init: { method?: string; json?: unknown } = {}): Promise<T> => client.request<T>(path, init);

async function startApp(script: string, application: string, env: Record<string, string> = {}): Promise<string> {
  return (await startAgentApp(script, application, { serverUrl: url, token: agentToken }, env)).url;
}

const totalsReach = (application: string, direction: 'inbound' | 'outbound', expected: CallTotals) =>
  client.totalsReach(application, direction, expected, { from: started });

const call = async (consumer: string, n: number) => {
  for (let i = 0; i < n; i++) await fetch(`${consumer}/call?path=/api/items/${i}`);
};

beforeAll(async () => {
  port = await freePort();
  url = `http://127.0.0.1:${port}`;
  client = new StewardApi(url);
  await startServer();
  agentToken = await client.agentToken(`stats-${run}`);
}, 60_000);

afterAll(() => killAll());

describe('call statistics through Kafka', () => {
  it('counts every call exactly, by outcome, on both sides, with records and the dependency graph', async () => {
    const provider = await startApp(PROVIDER_SCRIPT, PROV);
    const consumer = await startApp(CONSUMER_SCRIPT, CONS, { PROVIDER_URL: provider });
    const rule = await api<{ revision: number }>(`/api/applications/${PROV}/rules`, {
      method: 'POST',
      json: {
        rule: {
          kind: 'limit',
          target: { direction: 'inbound', resource: { type: 'http', path: '/api/**' } },
          limit: { mode: 'qps', permitsPerSec: 0.001, burst: 5 },
          rejection: { http: { status: 429 } },
        },
      },
    });
    await eventually(async () => {
      const acks = await api<{ acknowledged: number }>(`/api/applications/${PROV}/revisions/${rule.revision}/acks`);
      return acks.acknowledged === 1 ? true : undefined;
    });
    // The consumer must know where the provider listens before its calls count as outbound to it.
    await eventually(async () => {
      const agents = await api<{ summary: { connected: number } }>(`/api/applications/${CONS}/agents`);
      return agents.summary.connected === 1 ? true : undefined;
    });
    await new Promise((r) => setTimeout(r, 500));

    await call(consumer, 3); // 3 successes
    await fetch(`${provider}/admin/failing`, { method: 'POST', body: '{"failing":true}' });
    await call(consumer, 2); // 2 errors (500)
    await call(consumer, 7); // the bucket of 5 is empty: 7 limited (429)

    // The provider also served the POST that switched it to failing: 13 inbound calls.
    await totalsReach(PROV, 'inbound', { calls: 13, successes: 4, errors: 2, limited: 7, broken: 0, degraded: 0 });
    // The consumer sees 3 × 200, 2 × 500 (errors) and 7 × 429 (answers, not errors).
    await totalsReach(CONS, 'outbound', { calls: 12, successes: 10, errors: 2, limited: 0, broken: 0, degraded: 0 });
    await totalsReach(CONS, 'inbound', { calls: 12, successes: 12, errors: 0, limited: 0, broken: 0, degraded: 0 });

    const graph = await api<{ edges: { caller: string; callee: string; calls: number; errors: number }[] }>(
      `/api/stats/graph?from=${started}&to=${Date.now() + 60_000}&resolution=1m`,
    );
    expect(graph.edges.find((e) => e.caller === CONS && e.callee === PROV)).toMatchObject({ calls: 12, errors: 2 });

    // Every failed and every blocked call is a record; the provider's and the consumer's records share trace ids.
    const records = await eventually(async () => {
      const page = await api<{ items: { outcome: string; traceId: string; status: number }[] }>(
        `/api/stats/records?application=${PROV}&from=${started}&pageSize=100`,
      );
      const blocked = page.items.filter((r) => r.outcome === 'limited').length;
      const failed = page.items.filter((r) => r.outcome === 'error').length;
      return blocked === 7 && failed === 2 ? page.items : undefined;
    }, 20_000);
    const trace = records.find((r) => r.outcome === 'error')!.traceId;
    const traced = await api<{ items: { direction: string; caller: string; callee: string }[] }>(
      `/api/stats/records?traceId=${trace}&from=${started}`,
    );
    expect(traced.items.map((r) => r.direction).sort()).toEqual(['inbound', 'outbound']);
  }, 120_000);

  it('stays exact when the server is away for a while: the agents buffer and flush on reconnect', async () => {
    const application = `sb-${run}`;
    const provider = await startApp(PROVIDER_SCRIPT, application);
    await eventually(async () => {
      const agents = await api<{ summary: { connected: number } }>(`/api/applications/${application}/agents`);
      return agents.summary.connected === 1 ? true : undefined;
    });
    for (let i = 0; i < 4; i++) await fetch(`${provider}/api/items/${i}`);
    await new Promise((r) => setTimeout(r, 1_500));
    await server.kill('SIGKILL');
    // Calls in several seconds while nobody listens.
    for (let i = 0; i < 6; i++) {
      await fetch(`${provider}/api/items/${i}`);
      await new Promise((r) => setTimeout(r, 700));
    }
    await startServer();
    await totalsReach(application, 'inbound', { calls: 10, successes: 10, errors: 0, limited: 0, broken: 0, degraded: 0 });
  }, 120_000);
});
