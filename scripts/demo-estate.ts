/**
 * The demo estate: real Dubbo and Spring Cloud applications registered in the local stack, so the
 * catalog has something to show. Runs until SIGINT/SIGTERM, then stops them (their registrations
 * go with them). Started by scripts/demo.sh.
 */
import { fileURLToPath } from 'node:url';
import { buildJavaFixtures, startFixture, stopAllFixtures } from '../test/support/java-fixtures.js';
import { AGENT_REGISTER, eventually, killAll, startNode } from '../test/support/processes.js';

const SERVER = `http://${process.env.HOST ?? '127.0.0.1'}:${process.env.PORT ?? '3000'}`;
const example = (name: string) => fileURLToPath(new URL(`../examples/node/${name}.mjs`, import.meta.url));

async function api<T>(path: string, init: { method?: string; json?: unknown } = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(`${SERVER}${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${process.env.ADMIN_TOKEN ?? ''}`, 'content-type': 'application/json' },
    ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/**
 * Two plain Node apps with the agent preloaded (demo-node-shop calls demo-node-inventory), a
 * starter rule set, and a little traffic, so rules can be seen taking effect.
 */
async function startNodeApps(): Promise<void> {
  await eventually(async () => ((await fetch(`${SERVER}/livez`)).ok ? true : undefined), 120_000, 'the Steward server');
  const token = await api<{ token: string }>('/api/tokens', {
    method: 'POST',
    json: { name: `demo-agents-${Date.now()}`, role: 'agent', applications: ['demo-node-shop', 'demo-node-inventory'] },
  });
  if (token.status !== 201) throw new Error(`could not issue an agent token: ${JSON.stringify(token.body)}`);
  const agentEnv = (application: string) => ({
    APP_NAME: application,
    STEWARD_SERVER_URL: SERVER,
    STEWARD_APPLICATION: application,
    STEWARD_AGENT_TOKEN: token.body.token,
    STEWARD_STATE_DIR: '.stack/agent-state',
    STEWARD_HOST: '127.0.0.1',
  });
  const inventory = startNode(['--import', AGENT_REGISTER, example('provider')], agentEnv('demo-node-inventory'));
  const { listening: inventoryPort } = await inventory.line<{ listening: number }>((v) => typeof v['listening'] === 'number');
  const shop = startNode(['--import', AGENT_REGISTER, example('consumer')], {
    ...agentEnv('demo-node-shop'),
    PROVIDER_URL: `http://127.0.0.1:${inventoryPort}`,
  });
  const { listening: shopPort } = await shop.line<{ listening: number }>((v) => typeof v['listening'] === 'number');
  console.log(`[estate] demo-node-inventory on :${inventoryPort}, demo-node-shop on :${shopPort} (agents preloaded)`);

  const existing = await api<{ rules: unknown[] }>('/api/applications/demo-node-inventory/rules');
  if (existing.body.rules.length === 0) {
    await api('/api/applications/demo-node-inventory/rules', {
      method: 'POST',
      json: {
        reason: 'demo starter rule',
        rule: {
          kind: 'limit',
          description: 'at most 5 item reads per second per instance',
          target: { direction: 'inbound', resource: { type: 'http', method: 'GET', path: '/api/items/*' } },
          limit: { mode: 'qps', permitsPerSec: 5 },
        },
      },
    });
    await api('/api/applications/demo-node-shop/rules', {
      method: 'POST',
      json: {
        reason: 'demo starter rule',
        rule: {
          kind: 'breaker',
          description: 'stop calling inventory while half its answers fail',
          target: { direction: 'outbound', callee: 'demo-node-inventory', resource: { type: 'application' } },
          breaker: { strategy: 'errorRatio', threshold: 0.5, minCalls: 5, windowMs: 5_000, openMs: 5_000 },
        },
      },
    });
  }
  // Steady traffic through the shop, under the limit; a burst on top of it (see below) is limited.
  let n = 0;
  setInterval(() => void fetch(`http://127.0.0.1:${shopPort}/call?path=/api/items/${n++ % 50}`).catch(() => undefined), 500);
  console.log(
    `[estate] try: curl -s http://127.0.0.1:${shopPort}/call?path=/api/items/1 ; ` +
      `curl -s -H "Authorization: Bearer $ADMIN_TOKEN" ${SERVER}/api/applications/demo-node-inventory/agents ; ` +
      `curl -s -X POST http://127.0.0.1:${inventoryPort}/admin/failing -d '{"failing":true}' (the shop's breaker opens)`,
  );
}

async function main(): Promise<void> {
  await buildJavaFixtures((line) => console.log(`[estate] ${line}`));
  const started = await Promise.all([
    startFixture('dubbo3-provider', { app: 'demo-orders', warmupMs: 0 }),
    startFixture('dubbo3-provider', { app: 'demo-orders', warmupMs: 0 }),
    startFixture('dubbo3-provider', { app: 'demo-catalog', registerMode: 'instance', group: 'catalog' }),
    startFixture('dubbo27-provider', { app: 'demo-legacy-billing', group: 'billing' }),
    startFixture('spring-eureka-app', { app: 'demo-stock' }),
  ]);
  started.push(await startFixture('dubbo3-consumer', { app: 'demo-web', intervalMs: 200 }));
  for (const app of started) console.log(`[estate] ${app.app} (${app.name}) pid ${app.pid}, port ${app.port}`);
  await startNodeApps();
  console.log('[estate] running; Ctrl-C stops it');
  const stop = () => {
    killAll();
    void stopAllFixtures().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  setInterval(() => undefined, 60_000);
}

main().catch(async (error: unknown) => {
  console.error('[estate] failed:', error);
  killAll();
  await stopAllFixtures();
  process.exit(1);
});
