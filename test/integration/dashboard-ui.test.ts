import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN } from '../support/app.js';
import { EurekaTestRegistry } from '../support/eureka-registrations.js';
import { freePort } from '../support/net.js';
import { type Child, eventually, killAll } from '../support/processes.js';
import { stackEnv } from '../support/stack.js';
import { CONSUMER_SCRIPT, PROVIDER_SCRIPT, startAgentApp, StewardApi } from '../support/stats-apps.js';
import { startStewardProcess } from '../support/steward-process.js';

/**
 * The dashboard in Debian's chromium (playwright-core, no browser download), against the built
 * server, the real stack and example Node apps with the agent preloaded: a rule edited in the UI
 * reaches every instance, a breaker opened by real failing calls shows in the graph, a failed call
 * is found by its trace id, a viewer gets no edit controls; and the screens render with an empty
 * estate, with thousands of instances, and with the server gone. Each screen is kept as a
 * screenshot in .stack/artifacts/dashboard/.
 */

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(process.cwd(), '.stack', 'artifacts', 'dashboard');
const run = Date.now().toString(36);
const PROV = `ui-inventory-${run}`;
const CONS = `ui-shop-${run}`;

let browser: Browser;
let port = 0;
let url = '';
let server: Child;
let client: StewardApi;
let consumerUrl = '';
let providerUrls: string[] = [];
const eureka = new EurekaTestRegistry(stackEnv.EUREKA_URLS.split(',')[0]!);

async function newPage(token = ADMIN_TOKEN, base = url): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await page.goto(base);
  await page.getByTestId('login-token').fill(token);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('current-user').waitFor();
  return page;
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

const call = (path: string) =>
  fetch(`${consumerUrl}/call?path=${encodeURIComponent(path)}`).then(
    (r) => r.json() as Promise<{ status: number; reason: string | null }>,
  );

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  port = await freePort();
  url = `http://127.0.0.1:${port}`;
  client = new StewardApi(url);
  server = await startStewardProcess(port, {
    AGENT_HEARTBEAT_MS: '1000',
    STATS_TOPIC: `steward.stats.ui-${run}`,
    EUREKA_FETCH_INTERVAL_MS: '1000',
  });
  const token = await client.agentToken(`ui-${run}`);
  const agent = { serverUrl: url, token };
  providerUrls = [
    (await startAgentApp(PROVIDER_SCRIPT, PROV, agent)).url,
    (await startAgentApp(PROVIDER_SCRIPT, PROV, agent)).url,
  ];
  consumerUrl = (await startAgentApp(CONSUMER_SCRIPT, CONS, agent, { PROVIDER_URL: providerUrls[0]! })).url;
  await client.waitForAgents(PROV, 2);
  await client.waitForAgents(CONS, 1);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await eureka.cleanup().catch(() => undefined);
  killAll();
});

describe('the dashboard in a browser', () => {
  it('logs in with an API token and shows the estate on the overview', async () => {
    const page = await newPage();
    expect(await page.getByTestId('current-user').getAttribute('data-role')).toBe('admin');
    await page.getByTestId('connection-indicator').waitFor();
    await screenshot(page, 'overview');
    await page.close();
  });

  it('edits a rule in the UI and shows its push reaching every instance (2 of 2)', async () => {
    const page = await newPage();
    await page.goto(`${url}/rules/new?application=${PROV}`);
    const rule = {
      kind: 'limit',
      target: { direction: 'inbound', resource: { type: 'http', path: '/api/**' } },
      limit: { mode: 'qps', permitsPerSec: 1000, burst: 1000 },
    };
    await page.getByTestId('rule-editor').fill(JSON.stringify(rule, null, 2));
    await page.getByTestId('rule-valid').waitFor({ timeout: 10_000 });
    await page.getByTestId('rule-reason').fill('browser test');
    await page.getByTestId('rule-save').click();
    const progress = page.getByTestId('push-progress').first();
    await expect.poll(() => progress.textContent(), { timeout: 20_000 }).toBe('acknowledged 2 of 2');
    await screenshot(page, 'rules-push');
    // The list and the history show it.
    await page.goto(`${url}/rules?application=${PROV}`);
    await page.getByTestId('rules-row').first().waitFor();
    await screenshot(page, 'rules');
    await page.goto(`${url}/rules/history/${PROV}`);
    await page.getByTestId('rule-history-row').first().waitFor();
    await screenshot(page, 'rules-history');
    await page.close();
  });

  it('marks a breaker opened by real failing calls in the dependency graph', async () => {
    const breaker = await client.request<{ id: string; revision: number }>(`/api/applications/${CONS}/rules`, {
      method: 'POST',
      json: {
        rule: {
          kind: 'breaker',
          target: { direction: 'outbound', callee: PROV, resource: { type: 'application' } },
          breaker: { strategy: 'errorCount', threshold: 3, minCalls: 3, windowMs: 30_000, openMs: 120_000, probes: 1 },
        },
      },
    });
    await eventually(async () => {
      const acks = await client.request<{ acknowledged: number }>(`/api/applications/${CONS}/revisions/${breaker.revision}/acks`);
      return acks.acknowledged === 1 ? true : undefined;
    });
    for (let i = 0; i < 3; i++) expect((await call('/api/items/1')).status).toBe(200);
    await fetch(`${providerUrls[0]}/admin/failing`, { method: 'POST', body: '{"failing":true}' });
    for (let i = 0; i < 3; i++) expect((await call('/api/items/2')).status).toBe(500);
    expect(await call('/api/items/3')).toMatchObject({ status: 503, reason: 'breaker-open' });

    const page = await newPage();
    await page.goto(`${url}/graph`);
    const edge = await eventually(
      async () => {
        await page.reload();
        await page.locator('[data-testid="dependency-graph"][data-ready="true"]').waitFor({ timeout: 10_000 });
        return page
          .evaluate(
            ([caller, callee]) => {
              // In the page: the read-only hook the UI exposes for tests (web/src/testhooks.ts).
              type Element = { data(key?: string): unknown };
              const hooks = (globalThis as unknown as { __steward?: { cy?: { edges(): { toArray(): Element[] } } } }).__steward;
              const e = hooks?.cy
                ?.edges()
                .toArray()
                .find((x) => x.data('source') === caller && x.data('target') === callee);
              return e ? (e.data() as Record<string, unknown>) : undefined;
            },
            [CONS, PROV],
          )
          .then((data) => (data && data['breakerOpen'] === true ? data : undefined));
      },
      60_000,
      `the ${CONS} → ${PROV} edge marked with an open breaker`,
    );
    expect(edge['breakerOpen']).toBe(true);
    await screenshot(page, 'graph');
    await page.close();
  });

  it('finds a failed call by its trace id in the call records', async () => {
    const failed = await eventually(
      async () => {
        const found = await client.request<{ items: { traceId: string; status: number; application: string }[] }>(
          `/api/stats/records?application=${PROV}&outcome=error&pageSize=5`,
        );
        return found.items[0];
      },
      60_000,
      'a failed call record of the provider',
    );
    const page = await newPage();
    await page.goto(`${url}/records`);
    await page.getByTestId('records-trace-id').fill(failed.traceId);
    await page.getByTestId('records-search').click();
    const row = page.getByTestId('record-row').first();
    await row.waitFor({ timeout: 15_000 });
    expect(await page.getByTestId('records-table').textContent()).toContain(failed.traceId.slice(0, 8));
    await row.click();
    await page.getByTestId('record-detail').first().waitFor();
    expect(await page.getByTestId('record-detail').first().textContent()).toContain(failed.traceId);
    await screenshot(page, 'records');
    await page.close();
  });

  it('shows traffic, agents, catalog and audit screens with the live estate', async () => {
    for (let i = 0; i < 5; i++) await call(`/api/items/${i}`);
    const page = await newPage();
    await page.goto(`${url}/agents`);
    await page.getByTestId('agents-row').first().waitFor();
    await screenshot(page, 'agents');
    await page.goto(`${url}/traffic?application=${PROV}`);
    await page.waitForTimeout(3_000);
    await screenshot(page, 'traffic');
    // The example apps are in no registry: a Spring-style application in the real Eureka is.
    const app = `UI-ORDERS-${run}`.toUpperCase();
    for (let i = 0; i < 2; i++)
      await eureka.register({ app, instanceId: `${app.toLowerCase()}-${i}`, ip: '10.9.0.1', port: 8080 + i });
    await eventually(
      async () => {
        const found = await client.request<{ total: number }>(`/api/registry/applications?q=${app}&pageSize=1`);
        return found.total > 0 ? true : undefined;
      },
      30_000,
      `${app} in the catalog`,
    );
    await page.goto(`${url}/catalog`);
    await page.getByTestId('catalog-table').waitFor();
    await screenshot(page, 'catalog');
    await page.goto(`${url}/audit`);
    await page.getByTestId('audit-row').first().waitFor();
    await screenshot(page, 'audit');
    await page.close();
  });

  it('gives a viewer no edit controls, and the API refuses a viewer edit anyway', async () => {
    const viewer = (
      await client.request<{ token: string }>('/api/tokens', {
        method: 'POST',
        json: { name: `ui-viewer-${run}`, role: 'viewer' },
      })
    ).token;
    const page = await newPage(viewer);
    expect(await page.getByTestId('current-user').getAttribute('data-role')).toBe('viewer');
    await page.goto(`${url}/rules?application=${PROV}`);
    await page.getByTestId('rules-row').first().waitFor();
    expect(await page.getByTestId('rule-new').count()).toBe(0);
    expect(await page.getByTestId('rule-toggle').count()).toBe(0);
    expect(await page.getByTestId('rule-delete').count()).toBe(0);
    const id = await page.getByTestId('rules-row').first().getAttribute('data-rule-id');
    await page.goto(`${url}/rules/edit/${PROV}/${id}`);
    await page.getByTestId('rule-editor').waitFor();
    expect(await page.getByTestId('rule-save').count()).toBe(0);
    await screenshot(page, 'viewer-rule');
    const refused = await fetch(`${url}/api/applications/${PROV}/rules`, {
      method: 'POST',
      headers: { authorization: `Bearer ${viewer}`, 'content-type': 'application/json' },
      body: '{"rule":{}}',
    });
    expect(refused.status).toBe(403);
    // A dry run writes nothing: the viewer may validate.
    const checked = await fetch(`${url}/api/applications/${PROV}/rules/validate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${viewer}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        rule: {
          kind: 'limit',
          target: { direction: 'inbound', resource: { type: 'application' } },
          limit: { mode: 'qps', permitsPerSec: 5 },
        },
      }),
    });
    expect(checked.status).toBe(200);
    await page.close();
  });

  it('renders the catalog of thousands of instances without freezing', async () => {
    const apps = 150;
    const perApp = 20;
    const names = Array.from({ length: apps }, (_, a) => `UI-HUGE-${run}-${a}`.toUpperCase());
    const work = names.flatMap((app, a) =>
      Array.from({ length: perApp }, (_, i) => ({
        app,
        instanceId: `${app.toLowerCase()}-${i}`,
        ip: `10.${a % 250}.${i}.1`,
        port: 8080,
      })),
    );
    for (let i = 0; i < work.length; i += 50) await Promise.all(work.slice(i, i + 50).map((w) => eureka.register(w)));
    await eventually(
      async () => {
        const page = await client.request<{ total: number }>(`/api/registry/applications?q=UI-HUGE-${run}&pageSize=1`);
        return page.total >= apps ? true : undefined;
      },
      60_000,
      `${apps} applications in the catalog`,
    ).catch(() => undefined);
    const page = await newPage();
    const started = Date.now();
    await page.goto(`${url}/catalog`);
    await page.getByTestId('catalog-table').waitFor();
    const rows = await page.getByTestId('app-row').count();
    expect(rows).toBeGreaterThan(0);
    // Paged or virtualised: a few hundred rows at most, never thousands in the DOM.
    expect(rows).toBeLessThanOrEqual(500);
    expect(Date.now() - started).toBeLessThan(15_000);
    await screenshot(page, 'catalog-huge');
    await page.goto(`${url}/`);
    await page.getByTestId('current-user').waitFor();
    await screenshot(page, 'overview-huge');
    await page.close();
  });

  it('renders every screen of an empty estate with empty states', async () => {
    const emptyPort = await freePort();
    await startStewardProcess(emptyPort, {
      MONGODB_URI: stackEnv.MONGODB_URI.replace(/\/[^/]*$/, `/steward_ui_empty_${run}`),
      ZOOKEEPER_CONNECT: '',
      EUREKA_URLS: '',
      STATS_TOPIC: `steward.stats.ui-empty-${run}`,
    });
    const base = `http://127.0.0.1:${emptyPort}`;
    const page = await newPage(ADMIN_TOKEN, base);
    for (const screen of ['', 'catalog', 'agents', 'rules', 'traffic', 'graph', 'records', 'audit']) {
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${base}/${screen}`);
      await page.getByTestId('current-user').waitFor();
      await page.waitForTimeout(500);
      expect(errors, `/${screen}`).toEqual([]);
      expect(
        (await page.locator('main, .screen').first().textContent())?.trim().length,
        `/${screen} is not blank`,
      ).toBeGreaterThan(0);
      await screenshot(page, `empty-${screen || 'overview'}`);
    }
    await page.close();
  });

  it('keeps the last data and says the server is unreachable when it goes away', async () => {
    const page = await newPage();
    await page.goto(`${url}/agents`);
    await page.getByTestId('agents-row').first().waitFor();
    await server.kill('SIGKILL');
    await page.getByTestId('connection-banner').waitFor({ timeout: 20_000 });
    expect(await page.getByTestId('agents-row').count()).toBeGreaterThan(0);
    await screenshot(page, 'server-unreachable');
    await page.close();
  });
});
