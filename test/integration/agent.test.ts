import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MongoClient } from 'mongodb';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ADMIN_TOKEN } from '../support/app.js';
import { freePort } from '../support/net.js';
import { AGENT_REGISTER, type Child, eventually, killAll, startNode } from '../support/processes.js';
import { stackEnv } from '../support/stack.js';
import { startStewardProcess } from '../support/steward-process.js';

/**
 * The agent protocol end to end: the built server in its own process (so it can be killed), the
 * local stack, and plain Node HTTP apps (examples/node) with the built agent preloaded.
 */

const run = Date.now().toString(36);
const PROVIDER = fileURLToPath(new URL('../../examples/node/provider.mjs', import.meta.url));
const CONSUMER = fileURLToPath(new URL('../../examples/node/consumer.mjs', import.meta.url));

let port = 0;
let url = '';
let server: Child;
let agentToken = '';

async function startServer(): Promise<void> {
  server = await startStewardProcess(port, { AGENT_HEARTBEAT_MS: '1000', AGENT_REVISION_POLL_MS: '300' });
}

async function api<T = Record<string, unknown>>(path: string, init: { method?: string; json?: unknown; token?: string } = {}) {
  const res = await fetch(`${url}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      authorization: `Bearer ${init.token ?? ADMIN_TOKEN}`,
      ...(init.json === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

interface App {
  url: string;
  port: number;
  stateDir: string;
  process: Child;
}

async function startApp(script: string, application: string, env: Record<string, string> = {}, stateDir?: string): Promise<App> {
  const dir = stateDir ?? mkdtempSync(join(tmpdir(), 'steward-agent-test-'));
  const child = startNode(['--import', AGENT_REGISTER, script], {
    APP_NAME: application,
    STEWARD_SERVER_URL: url,
    STEWARD_APPLICATION: application,
    STEWARD_AGENT_TOKEN: agentToken,
    STEWARD_STATE_DIR: dir,
    STEWARD_HOST: '127.0.0.1',
    STEWARD_LOG: 'warn',
    ...env,
  });
  const line = await child.line<{ listening: number }>((v) => typeof v['listening'] === 'number');
  return { url: `http://127.0.0.1:${line.listening}`, port: line.listening, stateDir: dir, process: child };
}

interface AgentsView {
  revision: number;
  summary: { connected: number; inSync: number; pending: number; nacked: number; disconnected: number };
  agents: {
    instanceId: string;
    connected: boolean;
    connectedSince: string;
    lastHeartbeatAt: string;
    appliedRevision: number;
    sync: string;
    ports: number[];
    lastNack: { revision: number; reason: string; keptRevision: number } | null;
    breakers: Record<string, { state: string }>;
  }[];
}

const agentsOf = async (application: string) => (await api<AgentsView>(`/api/applications/${application}/agents`)).body;

/** Waits until `count` connected instances enforce `revision` (the API's ACK count). */
async function acked(application: string, revision: number, count: number): Promise<void> {
  await eventually(
    async () => {
      const { body } = await api<{ acknowledged: number }>(`/api/applications/${application}/revisions/${revision}/acks`);
      return body.acknowledged === count ? true : undefined;
    },
    20_000,
    `${count} ACKs of ${application}@${revision}`,
  );
}

async function connected(application: string, count: number): Promise<AgentsView> {
  return eventually(
    async () => {
      const view = await agentsOf(application);
      return view.summary.connected === count && view.agents.every((a) => !a.connected || a.ports.length > 0) ? view : undefined;
    },
    20_000,
    `${count} connected agents of ${application}`,
  );
}

async function createRule(application: string, rule: unknown): Promise<{ id: string; revision: number }> {
  const { status, body } = await api<{ revision: number; rule: { id: string } }>(`/api/applications/${application}/rules`, {
    method: 'POST',
    json: { rule, reason: 'agent test' },
  });
  expect(status, JSON.stringify(body)).toBe(201);
  return { id: body.rule.id, revision: body.revision };
}

async function updateRule(application: string, id: string, rule: unknown): Promise<number> {
  const { status, body } = await api<{ revision: number }>(`/api/applications/${application}/rules/${id}`, {
    method: 'PUT',
    json: { rule, reason: 'agent test' },
  });
  expect(status, JSON.stringify(body)).toBe(200);
  return body.revision;
}

async function get(target: string): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(target);
  return { status: res.status, headers: res.headers, body: await res.text() };
}

async function served(app: App): Promise<number> {
  return ((await (await fetch(`${app.url}/admin/stats`)).json()) as { served: number }).served;
}

interface CallResult {
  status: number;
  reason: string | null;
  rule: string | null;
  body: string;
}

async function callThrough(consumer: App, path: string, client: 'fetch' | 'http' = 'fetch'): Promise<CallResult> {
  return (await (await fetch(`${consumer.url}/call?client=${client}&path=${encodeURIComponent(path)}`)).json()) as CallResult;
}

const limitRule = (burst: number, status = 503) => ({
  kind: 'limit',
  target: { direction: 'inbound', resource: { type: 'http', path: '/api/**' } },
  // A rate low enough that no token comes back during the test: exactly `burst` calls pass.
  limit: { mode: 'qps', permitsPerSec: 0.001, burst },
  rejection: { http: { status, headers: { 'retry-after': '30' }, body: 'slow down' } },
});

/** Sends `n` calls one after another; returns the statuses. */
async function burst(target: string, n: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < n; i++) statuses.push((await get(target)).status);
  return statuses;
}

const count = (values: number[], value: number) => values.filter((v) => v === value).length;

beforeAll(async () => {
  port = await freePort();
  url = `http://127.0.0.1:${port}`;
  await startServer();
  const { status, body } = await api<{ token: string }>('/api/tokens', {
    method: 'POST',
    json: { name: `agents-${run}`, role: 'agent' },
  });
  expect(status).toBe(201);
  agentToken = body.token;
}, 60_000);

afterAll(() => killAll());

describe('agents enforce rules pushed live', () => {
  it('limit: the configured share is rejected with the configured answer; an edit lands live and every instance ACKs it', async () => {
    const application = `lim-${run}`;
    const [a, b] = await Promise.all([startApp(PROVIDER, application), startApp(PROVIDER, application)]);
    const before = await connected(application, 2);
    expect(before.agents.map((x) => x.appliedRevision)).toEqual([0, 0]);

    const rule = await createRule(application, limitRule(5));
    await acked(application, rule.revision, 2);

    const statuses = await burst(`${a.url}/api/items/1`, 12);
    expect(count(statuses, 200)).toBe(5);
    expect(count(statuses, 503)).toBe(7);
    // The handler never saw the rejected calls.
    expect(await served(a)).toBe(5);
    const rejected = await get(`${a.url}/api/items/1`);
    expect(rejected.status).toBe(503);
    expect(rejected.body).toBe('slow down');
    expect(rejected.headers.get('retry-after')).toBe('30');
    expect(rejected.headers.get('x-steward-reason')).toBe('limited');
    expect(rejected.headers.get('x-steward-rule')).toBe(rule.id);
    // Paths outside the target are not limited.
    expect((await get(`${a.url}/admin/stats`)).status).toBe(200);

    // Edited through the API: a new revision, pushed, ACKed by both instances, enforced afresh.
    const revision = await updateRule(application, rule.id, limitRule(8, 429));
    expect(revision).toBe(rule.revision + 1);
    await acked(application, revision, 2);
    const after = await burst(`${b.url}/api/items/2`, 12);
    expect(count(after, 200)).toBe(8);
    expect(count(after, 429)).toBe(4);

    const view = await agentsOf(application);
    expect(view.summary).toEqual({ connected: 2, inSync: 2, pending: 0, nacked: 0, disconnected: 0 });
    for (const agent of view.agents) {
      expect(agent).toMatchObject({ connected: true, appliedRevision: revision, sync: 'in-sync', lastNack: null });
      expect(Date.parse(agent.connectedSince)).toBeLessThanOrEqual(Date.parse(agent.lastHeartbeatAt));
    }
  }, 60_000);

  it('breaker and degrade on outbound calls: forced fallback, breaker opens, half-opens, closes; states reported', async () => {
    const provider = await startApp(PROVIDER, `bp-${run}`);
    const consumer = await startApp(CONSUMER, `bc-${run}`, { PROVIDER_URL: provider.url });
    await connected(`bp-${run}`, 1);
    await connected(`bc-${run}`, 1);

    const fallback = {
      http: { status: 200, headers: { 'content-type': 'application/json' }, body: '{"items":[],"degraded":true}' },
    };
    const degradeTarget = { direction: 'outbound', callee: `bp-${run}`, resource: { type: 'http', path: '/api/items/**' } };
    const degrade = await createRule(`bc-${run}`, { kind: 'degrade', target: degradeTarget, force: true, fallback });
    // The consumer calls the provider by address: the server tells it which application listens there.
    const forced = await eventually(async () => {
      const r = await callThrough(consumer, '/api/items/1');
      return r.reason === 'degraded-forced' ? r : undefined;
    });
    expect(forced).toMatchObject({ status: 200, rule: degrade.id, body: '{"items":[],"degraded":true}' });
    // (Calls made before the rule and the address map arrived reached the provider.)
    await fetch(`${provider.url}/admin/reset`, { method: 'POST' });
    expect(await callThrough(consumer, '/api/items/2', 'http')).toMatchObject({ status: 200, reason: 'degraded-forced' });
    expect(await callThrough(consumer, '/api/items/3')).toMatchObject({ status: 200, reason: 'degraded-forced' });
    expect(await served(provider)).toBe(0);

    // Not forced: calls go through; the fallback now only answers rejections.
    const unforced = await updateRule(`bc-${run}`, degrade.id, {
      kind: 'degrade',
      target: degradeTarget,
      force: false,
      fallback,
    });
    await acked(`bc-${run}`, unforced, 1);
    const through = await callThrough(consumer, '/api/items/3');
    expect(through).toMatchObject({ status: 200, reason: null });
    expect(JSON.parse(through.body)).toMatchObject({ from: `bp-${run}`, caller: `bc-${run}` });

    const breaker = await createRule(`bc-${run}`, {
      kind: 'breaker',
      target: { direction: 'outbound', callee: `bp-${run}`, resource: { type: 'application' } },
      breaker: { strategy: 'errorCount', threshold: 3, minCalls: 3, windowMs: 10_000, openMs: 1_500, probes: 1 },
    });
    await acked(`bc-${run}`, breaker.revision, 1);
    await fetch(`${provider.url}/admin/failing`, { method: 'POST', body: '{"failing":true}' });
    await fetch(`${provider.url}/admin/reset`, { method: 'POST' });
    for (const client of ['fetch', 'http', 'fetch'] as const) {
      expect(await callThrough(consumer, '/api/orders/1', client)).toMatchObject({ status: 500, reason: null });
    }
    // Three errors in the window: open. Rejected without reaching the provider.
    expect(await callThrough(consumer, '/api/orders/1')).toMatchObject({ status: 503, reason: 'breaker-open', rule: breaker.id });
    expect(await callThrough(consumer, '/api/orders/1', 'http')).toMatchObject({ status: 503, reason: 'breaker-open' });
    // Under the degrade rule's target the fallback answers instead.
    expect(await callThrough(consumer, '/api/items/9')).toMatchObject({ status: 200, reason: 'fallback', rule: degrade.id });
    expect(await served(provider)).toBe(3);
    await eventually(async () =>
      (await agentsOf(`bc-${run}`)).agents[0]?.breakers[breaker.id]?.state === 'OPEN' ? true : undefined,
    );

    // After openMs the next call is the probe; the provider has recovered, so the breaker closes.
    await fetch(`${provider.url}/admin/failing`, { method: 'POST', body: '{"failing":false}' });
    await new Promise((r) => setTimeout(r, 1_600));
    expect(await callThrough(consumer, '/api/orders/2')).toMatchObject({ status: 200, reason: null });
    expect(await callThrough(consumer, '/api/orders/3', 'http')).toMatchObject({ status: 200, reason: null });
    expect(await served(provider)).toBe(5);
    await eventually(async () =>
      (await agentsOf(`bc-${run}`)).agents[0]?.breakers[breaker.id]?.state === 'CLOSED' ? true : undefined,
    );

    // A failing probe re-opens it.
    await fetch(`${provider.url}/admin/failing`, { method: 'POST', body: '{"failing":true}' });
    for (let i = 0; i < 3; i++) await callThrough(consumer, '/api/orders/4');
    expect((await callThrough(consumer, '/api/orders/4')).reason).toBe('breaker-open');
    await new Promise((r) => setTimeout(r, 1_600));
    expect(await callThrough(consumer, '/api/orders/5')).toMatchObject({ status: 500, reason: null });
    expect(await callThrough(consumer, '/api/orders/5')).toMatchObject({ status: 503, reason: 'breaker-open' });
  }, 60_000);

  it('a malformed rule set written into the database is NACKed; the previous set stays enforced and the NACK is visible', async () => {
    const application = `nk-${run}`;
    const app = await startApp(PROVIDER, application);
    await connected(application, 1);
    const good = await createRule(application, limitRule(2));
    await acked(application, good.revision, 1);

    // What a bad migration or a hand edit could leave behind: a rule the schema refuses.
    const mongo = new MongoClient(stackEnv.MONGODB_URI);
    try {
      const db = mongo.db();
      const bad = `bad-${run}`;
      const next = good.revision + 1;
      const rule = {
        ...limitRule(1),
        id: bad,
        application,
        enabled: true,
        limit: { mode: 'qps', permitsPerSec: -5, burst: 1, perCaller: false },
      };
      await db.collection('rules').insertOne({
        _id: bad as never,
        application,
        revision: next,
        rule,
        targetKey: 'x',
        updatedAt: new Date(),
        updatedBy: 'test',
      });
      await db
        .collection('rule_sets')
        .updateOne({ _id: application as never }, { $set: { revision: next, updatedAt: new Date() } });
      await db.collection('rule_revisions').insertOne({
        _id: `${application}@${next}` as never,
        application,
        revision: next,
        kind: 'create',
        ruleIds: [bad],
        changes: [],
        actor: 'test',
        from: 'test',
        reason: 'injected',
        at: new Date(),
      });
      const nacked = await eventually(async () => {
        const view = await agentsOf(application);
        return view.agents[0]?.lastNack ? view : undefined;
      });
      expect(nacked.revision).toBe(next);
      expect(nacked.summary).toMatchObject({ connected: 1, nacked: 1, inSync: 0 });
      expect(nacked.agents[0]).toMatchObject({ appliedRevision: good.revision, sync: 'nacked' });
      expect(nacked.agents[0]!.lastNack).toMatchObject({ revision: next, keptRevision: good.revision });
      expect(nacked.agents[0]!.lastNack!.reason).toContain(bad);
      expect(nacked.agents[0]!.lastNack!.reason).toContain('limit.permitsPerSec');
      const acks = await api<{ acknowledged: number; nacked: number; instances: { nack?: string }[] }>(
        `/api/applications/${application}/revisions/${next}/acks`,
      );
      expect(acks.body).toMatchObject({ acknowledged: 0, nacked: 1 });

      // Still enforcing the last good set: burst 2.
      expect(count(await burst(`${app.url}/api/items/1`, 4), 200)).toBe(2);
    } finally {
      await mongo.close();
    }
  }, 60_000);

  it('rogue clients: bad tokens are refused; garbage and oversized frames are rejected; other agents carry on', async () => {
    const application = `rg-${run}`;
    const app = await startApp(PROVIDER, application);
    await connected(application, 1);

    const refusedWith = (token: string) =>
      new Promise<{ message: string; data: unknown }>((resolve) => {
        const socket = io(`${url}/agents`, { transports: ['websocket'], auth: { token }, reconnection: false });
        socket.on('connect_error', (error: Error & { data?: unknown }) => {
          socket.close();
          resolve({ message: error.message, data: error.data });
        });
      });
    expect(await refusedWith('stw_0000000000000000.' + 'x'.repeat(43))).toMatchObject({
      data: { code: 'unauthorized', message: 'unknown or revoked agent token' },
    });
    expect((await refusedWith('')).data).toMatchObject({ code: 'unauthorized' });
    const viewer = await api<{ token: string }>('/api/tokens', {
      method: 'POST',
      json: { name: `viewer-${run}`, role: 'viewer' },
    });
    expect((await refusedWith(viewer.body.token)).message).toBe('a viewer token cannot connect an agent');
    const scoped = await api<{ token: string }>('/api/tokens', {
      method: 'POST',
      json: { name: `scoped-${run}`, role: 'agent', applications: ['someone-else'] },
    });

    // A valid token, then nonsense.
    const rogue = await new Promise<Socket>((resolve) => {
      const socket = io(`${url}/agents`, { transports: ['websocket'], auth: { token: agentToken }, reconnection: false });
      socket.on('connect', () => resolve(socket));
    });
    const errors: { code: string; message: string }[] = [];
    rogue.on('error', (frame: { code: string; message: string }) => errors.push(frame));
    rogue.emit('ack', { type: 'ack', revision: 1 });
    rogue.emit('hello', { type: 'hello', protocol: 1 });
    rogue.emit('hello', 'not an object');
    rogue.emit('surprise', { type: 'surprise' });
    await eventually(() => (errors.length === 4 ? true : undefined));
    expect(errors.map((e) => e.code)).toEqual(['bad-frame', 'bad-frame', 'bad-frame', 'bad-frame']);
    expect(errors[0]!.message).toBe('the first frame must be hello');
    expect(errors[1]!.message).toContain('invalid hello frame');
    const closed = new Promise<string>((resolve) => rogue.on('disconnect', (reason) => resolve(reason)));
    for (let i = 0; i < 30; i++) rogue.emit('heartbeat', { type: 'heartbeat' });
    expect(await closed).toBe('io server disconnect');

    // A hello for an application the token does not cover.
    const wrongApp = io(`${url}/agents`, { transports: ['websocket'], auth: { token: scoped.body.token }, reconnection: false });
    const wrongAppError = new Promise<{ code: string }>((resolve) => wrongApp.on('error', resolve));
    wrongApp.on('connect', () =>
      wrongApp.emit('hello', {
        type: 'hello',
        protocol: 1,
        application,
        instanceId: 'intruder',
        run: 'intruder-run-1',
        host: '127.0.0.1',
        ports: [],
        agent: { language: 'node', version: '0' },
        capabilities: [],
        heldRevision: 0,
      }),
    );
    expect(await wrongAppError).toMatchObject({ code: 'unauthorized' });

    // An oversized frame closes that connection only.
    const big = await new Promise<Socket>((resolve) => {
      const socket = io(`${url}/agents`, { transports: ['websocket'], auth: { token: agentToken }, reconnection: false });
      socket.on('connect', () => resolve(socket));
    });
    const bigClosed = new Promise<string>((resolve) => big.on('disconnect', (reason) => resolve(reason)));
    big.emit('hello', { type: 'hello', padding: 'x'.repeat(2_000_000) });
    expect(await bigClosed).toBe('transport close');

    // Bytes that are not socket.io at all, straight on the websocket.
    const raw = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
    await new Promise((resolve) => raw.once('open', resolve));
    const rawClosed = new Promise((resolve) => raw.once('close', resolve));
    raw.send(Buffer.from([0xff, 0x00, 0x13, 0x37]));
    raw.send('4garbage{{{');
    await rawClosed;

    // The server is up and the real agent still gets rules.
    expect((await fetch(`${url}/livez`)).status).toBe(200);
    const rule = await createRule(application, limitRule(1));
    await acked(application, rule.revision, 1);
    expect(count(await burst(`${app.url}/api/x`, 3), 200)).toBe(1);
    expect((await agentsOf(application)).agents.filter((a) => a.connected).map((a) => a.instanceId)).not.toContain('intruder');
  }, 60_000);

  it('fail-static: rules stay enforced with the server down, and a restarted app loads them from its state directory', async () => {
    const application = `fs-${run}`;
    let app = await startApp(PROVIDER, application);
    await connected(application, 1);
    const rule = await createRule(application, limitRule(3));
    await acked(application, rule.revision, 1);

    await server.kill('SIGKILL');
    expect(count(await burst(`${app.url}/api/items/1`, 5), 200)).toBe(3);

    // Restarted while the server is still down: the last applied set comes from disk.
    const stateDir = app.stateDir;
    await app.process.kill('SIGTERM');
    app = await startApp(PROVIDER, application, {}, stateDir);
    const statuses = await burst(`${app.url}/api/items/1`, 5);
    expect(count(statuses, 200)).toBe(3);
    expect(count(statuses, 503)).toBe(2);

    // The server comes back: the agent reconnects holding the revision, nothing to resend.
    await startServer();
    const view = await connected(application, 1);
    expect(view.agents.find((a) => a.connected)).toMatchObject({ appliedRevision: rule.revision, sync: 'in-sync' });
  }, 90_000);
});
