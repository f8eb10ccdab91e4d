import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../support/app.js';
import { EurekaTestRegistry, uniqueAppName } from '../support/eureka-registrations.js';
import { eventually } from '../support/processes.js';
import { stackEnv } from '../support/stack.js';

/**
 * The dashboard's server side against the real stack: the built UI from WEB_ROOT (a fixture
 * directory here) with its client-side routes, `GET /api/me`, and the live `/dashboard` socket fed
 * by a real rule write, a real agent session on `/agents`, a Eureka registration and the stats
 * aggregator (Kafka), all in this process's server.
 */

const run = Date.now().toString(36);
const APP = `dash-${run}`;
const EUREKA_APP = uniqueAppName('dash');
const INDEX =
  '<!doctype html><html><head><title>Steward</title></head><body><div id="app">steward-ui-fixture</div></body></html>';
const ASSET = 'assets/index-3f2a9c1d.js';

interface Received {
  event: string;
  payload: unknown;
}

/** A dashboard client; every event it receives is kept, in order. */
class Dashboard {
  readonly socket: Socket;
  readonly received: Received[] = [];

  constructor(url: string, auth: Record<string, unknown>) {
    // forceNew: its own connection, not multiplexed with the agent's.
    this.socket = io(`${url}/dashboard`, { transports: ['websocket'], forceNew: true, reconnection: false, auth });
    this.socket.onAny((event: string, payload: unknown) => this.received.push({ event, payload }));
  }

  connected(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('connect_error', reject);
    });
  }

  refused(): Promise<Error & { data?: { code: string; message: string } }> {
    return new Promise((resolve, reject) => {
      this.socket.once('connect', () => reject(new Error('connected')));
      this.socket.once('connect_error', resolve);
    });
  }

  /** The payloads of `event` so far, flattened when they come as arrays (agents). */
  all<T>(event: string): T[] {
    return this.received
      .filter((r) => r.event === event)
      .flatMap((r) => (Array.isArray(r.payload) ? (r.payload as T[]) : [r.payload as T]));
  }

  waitFor<T>(event: string, accept: (payload: T) => boolean, timeoutMs = 15_000): Promise<T> {
    return eventually(() => this.all<T>(event).find(accept), timeoutMs, `a dashboard "${event}" event`);
  }
}

interface AgentEvent {
  application: string;
  instanceId: string;
  event: string;
  revision?: number;
  reason?: string;
  at: number;
}

/** An agent session spoken by hand on `/agents`: hello, then whatever the test sends. */
class RawAgent {
  readonly socket: Socket;
  readonly frames: { event: string; frame: Record<string, unknown> }[] = [];

  constructor(
    url: string,
    token: string,
    readonly instanceId: string,
  ) {
    this.socket = io(`${url}/agents`, { transports: ['websocket'], forceNew: true, reconnection: false, auth: { token } });
    this.socket.onAny((event: string, frame: Record<string, unknown>) => this.frames.push({ event, frame }));
  }

  hello(heldRevision: number): void {
    this.send({
      type: 'hello',
      protocol: 1,
      application: APP,
      instanceId: this.instanceId,
      run: `run${run}${this.instanceId.length}`.replace(/[^A-Za-z0-9_-]/g, '_'),
      host: '127.0.0.1',
      ports: [18080],
      agent: { language: 'node', version: 'test' },
      capabilities: ['limit'],
      heldRevision,
    });
  }

  send(frame: { type: string } & Record<string, unknown>): void {
    this.socket.emit(frame.type, frame);
  }

  waitFor(event: string, accept: (frame: Record<string, unknown>) => boolean = () => true): Promise<Record<string, unknown>> {
    return eventually(
      () => this.frames.find((f) => f.event === event && accept(f.frame))?.frame,
      15_000,
      `an agent "${event}" frame`,
    );
  }
}

const limitRule = (permitsPerSec: number) => ({
  kind: 'limit',
  target: { direction: 'inbound', resource: { type: 'http', path: '/api/**' } },
  limit: { mode: 'qps', permitsPerSec },
});

describe('dashboard server side', () => {
  let server: RunningApp;
  let webRoot = '';
  let viewer = '';
  let agentToken = '';
  const eureka = new EurekaTestRegistry(stackEnv.EUREKA_URLS);
  const sockets: Socket[] = [];
  const dashboard = (auth: Record<string, unknown>) => {
    const client = new Dashboard(server.url, auth);
    sockets.push(client.socket);
    return client;
  };
  const token = async (name: string, role: string) => {
    const res = await server.api('/api/tokens', { method: 'POST', json: { name, role } });
    expect(res.status).toBe(201);
    return ((await res.json()) as { token: string }).token;
  };

  beforeAll(async () => {
    webRoot = mkdtempSync(join(tmpdir(), 'steward-web-'));
    mkdirSync(join(webRoot, 'assets'));
    writeFileSync(join(webRoot, 'index.html'), INDEX);
    writeFileSync(join(webRoot, ASSET), 'console.log("steward fixture");\n');
    writeFileSync(join(webRoot, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    server = await startApp({
      WEB_ROOT: webRoot,
      ZOOKEEPER_DUBBO_ROOTS: `dash-${run}`,
      EUREKA_FETCH_INTERVAL_MS: '1000',
      REGISTRY_DEBOUNCE_MS: '50',
      STATS_TOPIC: `steward.stats.dash-${run}`,
    });
    viewer = await token(`viewer-${run}`, 'viewer');
    agentToken = await token(`agent-${run}`, 'agent');
  });

  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await server?.close();
    await eureka.cleanup();
    rmSync(webRoot, { recursive: true, force: true });
    rmSync(`${webRoot}.away`, { recursive: true, force: true });
  });

  describe('static UI', () => {
    it('serves index.html at / without long caching, and hashed assets as immutable', async () => {
      const index = await fetch(`${server.url}/`);
      expect(index.status).toBe(200);
      expect(index.headers.get('content-type')).toMatch(/^text\/html/);
      expect(index.headers.get('cache-control')).toBe('no-cache');
      expect(await index.text()).toBe(INDEX);
      const etag = index.headers.get('etag');
      expect(etag).toBeTruthy();
      // Revalidation (fetch would add Cache-Control: no-cache to a conditional request; a browser sends max-age=0).
      const again = await fetch(`${server.url}/`, { headers: { 'if-none-match': etag!, 'cache-control': 'max-age=0' } });
      expect(again.status).toBe(304);

      const asset = await fetch(`${server.url}/${ASSET}`);
      expect(asset.status).toBe(200);
      expect(asset.headers.get('content-type')).toMatch(/javascript/);
      expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(await asset.text()).toContain('steward fixture');

      const icon = await fetch(`${server.url}/favicon.svg`);
      expect(icon.status).toBe(200);
      expect(icon.headers.get('cache-control')).toBe('no-cache');
      await icon.body?.cancel();
    });

    it('answers client-side routes with index.html when a browser asks for HTML, and leaves server paths alone', async () => {
      const html = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' };
      for (const path of ['/rules/x', '/applications/orders.v2/agents', '/index.html']) {
        const res = await fetch(`${server.url}${path}`, { headers: html });
        expect(res.status, path).toBe(200);
        expect(res.headers.get('cache-control'), path).toBe('no-cache');
        expect(await res.text(), path).toBe(INDEX);
      }
      // Not a navigation: the usual 404.
      const json = await fetch(`${server.url}/rules/x`, { headers: { accept: 'application/json' } });
      expect(json.status).toBe(404);
      await json.body?.cancel();
      const post = await fetch(`${server.url}/rules/x`, { method: 'POST', headers: html });
      expect(post.status).toBe(404);
      await post.body?.cancel();
      // A missing hashed asset is a 404, never index.html (the browser would run HTML as a script).
      const asset = await fetch(`${server.url}/assets/index-00000000.js`, { headers: html });
      expect(asset.status).toBe(404);
      expect(await asset.text()).not.toContain('steward-ui-fixture');

      const api = await fetch(`${server.url}/api/unknown`, { headers: html });
      expect(api.status).toBe(404);
      expect(api.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await api.json()).toMatchObject({ statusCode: 404 });
      const livez = await fetch(`${server.url}/livez`, { headers: html });
      expect(livez.status).toBe(200);
      expect(await livez.json()).toMatchObject({ status: 'ok' });
      const openapi = await fetch(`${server.url}/docs/openapi.json`, { headers: html });
      expect(((await openapi.json()) as { paths: Record<string, unknown> }).paths).toHaveProperty('/api/me');
      const metrics = await fetch(`${server.url}/metrics`, { headers: html });
      expect(metrics.headers.get('content-type')).toContain('text/plain');
      await metrics.body?.cancel();

      // Nothing outside the root, however the path is written.
      const escape = await fetch(`${server.url}/..%2f..%2fpackage.json`, { headers: html });
      expect(escape.status).toBe(403);
      expect(await escape.text()).not.toContain('"name"');
    });

    it('answers 503 in plain text while the UI is not built, and serves it once it is', async () => {
      renameSync(webRoot, `${webRoot}.away`);
      try {
        for (const path of ['/', '/rules/x']) {
          const res = await fetch(`${server.url}${path}`, { headers: { accept: 'text/html' } });
          expect(res.status, path).toBe(503);
          expect(res.headers.get('content-type'), path).toMatch(/^text\/plain/);
          expect(await res.text(), path).toContain('npm run build:web');
        }
        expect((await fetch(`${server.url}/livez`)).status).toBe(200);
        const api = await fetch(`${server.url}/api/unknown`);
        expect(api.status).toBe(404);
        await api.body?.cancel();
      } finally {
        renameSync(`${webRoot}.away`, webRoot);
      }
      const back = await fetch(`${server.url}/`);
      expect(back.status).toBe(200);
      expect(await back.text()).toBe(INDEX);
    });
  });

  describe('GET /api/me', () => {
    it('names the token and its role; 401 without a valid token, 403 for an agent token', async () => {
      const admin = await server.api('/api/me');
      expect(admin.status).toBe(200);
      expect(await admin.json()).toEqual({ name: 'bootstrap-admin', role: 'admin' });
      const asViewer = await server.api('/api/me', { token: viewer });
      expect(asViewer.status).toBe(200);
      expect(await asViewer.json()).toEqual({ name: `viewer-${run}`, role: 'viewer' });

      for (const bad of [null, 'stw_0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'nonsense']) {
        const res = await server.api('/api/me', { token: bad });
        expect(res.status, String(bad)).toBe(401);
        await res.body?.cancel();
      }
      const agent = await server.api('/api/me', { token: agentToken });
      expect(agent.status).toBe(403);
      await agent.body?.cancel();
    });
  });

  describe('live socket /dashboard', () => {
    it('refuses a missing, unknown or agent token with connect_error "unauthorized"', async () => {
      for (const auth of [
        {},
        { token: 'stw_0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' },
        { token: agentToken },
      ]) {
        const error = await dashboard(auth).refused();
        expect(error.message).toBe('unauthorized');
        expect(error.data?.code).toBe('unauthorized');
        expect(error.data?.message).toEqual(expect.any(String));
      }
    });

    it('accepts a viewer, greets it, and counts it in steward_dashboard_clients', async () => {
      const client = dashboard({ token: viewer });
      await client.connected();
      const hello = await client.waitFor<Record<string, unknown>>('hello', () => true);
      expect(Object.keys(hello).sort()).toEqual(['aggregating', 'catalogSeq', 'name', 'role']);
      expect(hello).toMatchObject({ name: `viewer-${run}`, role: 'viewer', aggregating: true });
      expect(hello['catalogSeq']).toEqual(expect.any(Number));
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/^steward_dashboard_clients [1-9]/m);
      client.socket.disconnect();
      await eventually(async () => {
        const text = await (await fetch(`${server.url}/metrics`)).text();
        return /^steward_dashboard_clients 0$/m.test(text) ? true : undefined;
      });
    });

    it('sends rules, agents (connected, ack, nack, disconnected) and stats events as they happen', async () => {
      const client = dashboard({ token: viewer });
      await client.connected();

      const created = await server.api(`/api/applications/${APP}/rules`, {
        method: 'POST',
        json: { rule: limitRule(100), reason: 'dashboard test' },
      });
      expect(created.status).toBe(201);
      const { revision: first, rule } = (await created.json()) as { revision: number; rule: { id: string } };
      const rules = await client.waitFor<{ application: string; revision: number; at: number }>(
        'rules',
        (r) => r.application === APP && r.revision === first,
      );
      expect(Math.abs(rules.at - Date.now())).toBeLessThan(10_000);

      // An agent that holds nothing: it gets the snapshot at `first` and acknowledges it.
      const agent = new RawAgent(server.url, agentToken, `${APP}-1`);
      sockets.push(agent.socket);
      await new Promise<void>((resolve, reject) => {
        agent.socket.once('connect', resolve);
        agent.socket.once('connect_error', reject);
      });
      agent.hello(0);
      const snapshot = await agent.waitFor('snapshot');
      expect(snapshot['revision']).toBe(first);
      agent.send({ type: 'ack', revision: first });
      const mine = () => client.all<AgentEvent>('agents').filter((e) => e.instanceId === agent.instanceId);
      await eventually(() => (mine().some((e) => e.event === 'ack') ? true : undefined), 15_000, 'the ack event');

      // Its statistics go through Kafka and the aggregator; the settled second reaches the dashboard.
      const second = Math.floor(Date.now() / 1000) - 1;
      agent.send({
        type: 'stats',
        seq: 1,
        second,
        dropped: 0,
        entries: [
          {
            direction: 'inbound',
            peer: '',
            protocol: 'http',
            resource: 'GET /api/items/{id}',
            calls: 7,
            successes: 7,
            errors: 0,
            limited: 0,
            broken: 0,
            degraded: 0,
            slow: 0,
            latencySumMs: 14,
            latencyMaxMs: 3,
            histogram: [],
          },
        ],
      });
      await agent.waitFor('stats-ack', (f) => f['accepted'] === true);
      const stats = await client.waitFor<{ application: string; t: number; instances: number; inbound: { calls: number } }>(
        'stats',
        (s) => s.application === APP && s.t === second * 1000,
        90_000,
      );
      expect(stats.instances).toBe(1);
      expect(stats.inbound.calls).toBe(7);

      // A new revision reaches the agent as a delta; this agent refuses it.
      const updated = await server.api(`/api/applications/${APP}/rules/${rule.id}`, {
        method: 'PUT',
        json: { rule: limitRule(50), reason: 'dashboard test' },
      });
      expect(updated.status).toBe(200);
      const next = ((await updated.json()) as { revision: number }).revision;
      await client.waitFor<{ application: string; revision: number }>(
        'rules',
        (r) => r.application === APP && r.revision === next,
      );
      await agent.waitFor('delta');
      agent.send({ type: 'nack', revision: next, reason: 'refused by the test', keptRevision: first });
      await eventually(() => (mine().some((e) => e.event === 'nack') ? true : undefined), 15_000, 'the nack event');

      agent.socket.disconnect();
      await eventually(
        () => (mine().some((e) => e.event === 'disconnected') ? true : undefined),
        15_000,
        'the disconnected event',
      );

      const events = mine();
      expect(events.map((e) => e.event)).toEqual(['connected', 'ack', 'nack', 'disconnected']);
      const at = (e: AgentEvent) => e.at;
      expect(events.map(at)).toEqual([...events.map(at)].sort((a, b) => a - b));
      expect(events.every((e) => Math.abs(e.at - Date.now()) < 120_000)).toBe(true);
      const { instanceId } = agent;
      expect(events.map(({ at: _at, ...rest }) => rest)).toEqual([
        { application: APP, instanceId, event: 'connected', revision: 0 },
        { application: APP, instanceId, event: 'ack', revision: first },
        { application: APP, instanceId, event: 'nack', revision: next, reason: 'refused by the test' },
        { application: APP, instanceId, event: 'disconnected' },
      ]);
      // Each agents event came in an array, each rules event alone.
      expect(client.received.filter((r) => r.event === 'agents').every((r) => Array.isArray(r.payload))).toBe(true);
      expect(client.received.filter((r) => r.event === 'rules').every((r) => !Array.isArray(r.payload))).toBe(true);
    });

    it('sends catalog changes as the registry bridge publishes them', async () => {
      const client = dashboard({ token: viewer });
      await client.connected();
      const hello = await client.waitFor<{ catalogSeq: number }>('hello', () => true);
      const instanceId = `10.30.0.1:${EUREKA_APP.toLowerCase()}:8080`;
      await eureka.register({ app: EUREKA_APP, instanceId, ip: '10.30.0.1', port: 8080 });

      type Change = { seq: number; type: string; instance: { application: string; host: string; port: number } };
      type CatalogEvent = { seq: number; changes: Change[] };
      const ours = (e: CatalogEvent, type: string) =>
        e.changes.some((c) => c.type === type && c.instance.application === EUREKA_APP.toLowerCase());
      const added = await client.waitFor<CatalogEvent>('catalog', (e) => ours(e, 'added'), 30_000);
      expect(added.seq).toBeGreaterThan(hello.catalogSeq);
      expect(added.seq).toBe(added.changes.at(-1)!.seq);
      expect(added.changes.find((c) => c.type === 'added' && c.instance.host === '10.30.0.1')?.instance.port).toBe(8080);

      await eureka.cancel(EUREKA_APP, instanceId);
      const removed = await client.waitFor<CatalogEvent>('catalog', (e) => ours(e, 'removed'), 30_000);
      expect(removed.seq).toBeGreaterThan(added.seq);
      // Sequence numbers only grow, batch after batch.
      const seqs = client.all<CatalogEvent>('catalog').flatMap((e) => e.changes.map((c) => c.seq));
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    });
  });
});
