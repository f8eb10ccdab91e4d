import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startApp, type RunningApp } from '../support/app.js';
import { EurekaTestRegistry } from '../support/eureka-registrations.js';
import { stackEnv } from '../support/stack.js';
import { javaFormEncode, ZkClient } from '../support/zk.js';

const run = Date.now().toString(36);
const root = `steward-api-${run}`;
const APP = `billing-${run}`;
const IFACE = 'com.example.billing.InvoiceService';
const provider = (host: string, port: number) =>
  javaFormEncode(
    `dubbo://${host}:${port}/${IFACE}?application=${APP}&interface=${IFACE}&methods=issue,void&side=provider&release=3.3.5&timestamp=${Date.now()}`,
  );

async function until<T>(read: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (accept(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Instance {
  id: string;
  host: string;
  port: number;
  kind: string;
  status: string;
  weight: number;
  sourceKinds: string[];
}

describe('registry API over the real ZooKeeper and Eureka', () => {
  let server: RunningApp;
  let zk: ZkClient;
  const eureka = new EurekaTestRegistry(stackEnv.EUREKA_URLS);
  const EUREKA_APP = APP.toUpperCase();
  let operator = '';
  const get = async <T>(path: string): Promise<{ status: number; body: T }> => {
    const res = await server.api(path, { token: operator });
    return { status: res.status, body: (await res.json()) as T };
  };
  const post = async <T>(path: string, body: unknown): Promise<{ status: number; body: T }> => {
    const res = await server.api(path, { method: 'POST', json: body, token: operator });
    return { status: res.status, body: (await res.json()) as T };
  };

  beforeAll(async () => {
    zk = await ZkClient.connect(stackEnv.ZOOKEEPER_CONNECT);
    await zk.create(`/${root}/${IFACE}/providers/${provider('10.20.0.1', 20880)}`);
    await zk.create(`/${root}/${IFACE}/providers/${provider('10.20.0.2', 20880)}`);
    await eureka.register({ app: EUREKA_APP, instanceId: `10.20.0.1:${APP}:8080`, ip: '10.20.0.1', port: 8080 });
    server = await startApp({ ZOOKEEPER_DUBBO_ROOTS: root, EUREKA_FETCH_INTERVAL_MS: '1000', REGISTRY_DEBOUNCE_MS: '50' });
    const issued = await server.api('/api/tokens', { method: 'POST', json: { name: `alice-${run}`, role: 'operator' } });
    operator = ((await issued.json()) as { token: string }).token;
    await until(
      () => get<{ instanceCount?: number }>(`/api/registry/applications/${APP}`),
      (r) => r.body.instanceCount === 3,
    );
  });

  afterAll(async () => {
    await server?.close();
    await eureka.cleanup();
    await zk.removeTree(`/${root}`);
    zk.close();
  });

  it('shows one application with its Dubbo providers and its Eureka instance', async () => {
    const { status, body } = await get<{
      name: string;
      sourceKinds: string[];
      provides: { key: string; methods: string[]; providers: number }[];
      instances: Instance[];
    }>(`/api/registry/applications/${APP.toUpperCase()}`);
    expect(status).toBe(200);
    expect(body.sourceKinds).toEqual(['eureka', 'zookeeper']);
    expect(body.provides).toEqual([expect.objectContaining({ key: IFACE, methods: ['issue', 'void'], providers: 2 })]);
    expect(body.instances.map((i) => [i.kind, i.host, i.port])).toEqual([
      ['dubbo', '10.20.0.1', 20880],
      ['dubbo', '10.20.0.2', 20880],
      ['http', '10.20.0.1', 8080],
    ]);
  });

  it('searches, filters and pages', async () => {
    const byName = await get<{ total: number; items: { name: string }[] }>(`/api/registry/applications?q=${run}`);
    expect(byName.body.items.map((a) => a.name)).toContain(APP);
    const byInterface = await get<{ items: { name: string }[] }>(`/api/registry/applications?q=invoiceservice`);
    expect(byInterface.body.items.map((a) => a.name)).toContain(APP);
    const http = await get<{ total: number; items: Instance[] }>(`/api/registry/instances?application=${APP}&kind=http`);
    expect(http.body.items.map((i) => i.port)).toEqual([8080]);
    const host = await get<{ total: number }>(`/api/registry/instances?application=${APP}&host=10.20.0.2`);
    expect(host.body.total).toBe(1);
    const paged = await get<{ total: number; page: number; pageSize: number; items: Instance[] }>(
      `/api/registry/instances?application=${APP}&page=2&pageSize=2`,
    );
    expect(paged.body).toMatchObject({ total: 3, page: 2, pageSize: 2 });
    expect(paged.body.items).toHaveLength(1);
  });

  it('answers unknown names with 404 and bad queries with field-level 400s', async () => {
    expect((await get(`/api/registry/applications/no-such-app-${run}`)).status).toBe(404);
    const bad = await get<{ issues: { path: string }[] }>(`/api/registry/instances?status=SLEEPING&pageSize=0&color=red`);
    expect(bad.status).toBe(400);
    expect(bad.body.issues.map((i) => i.path).sort()).toEqual(['query', 'query.pageSize', 'query.status']);
  });

  it('streams changes as Server-Sent Events', async () => {
    const abort = new AbortController();
    const res = await server.api('/api/registry/changes', { signal: abort.signal, token: operator });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    const decoder = new TextDecoder();
    let text = '';
    const started = Date.now();
    await zk.create(`/${root}/${IFACE}/providers/${provider('10.20.0.3', 20880)}`);
    while (!text.includes('10.20.0.3') && Date.now() - started < 5_000) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    abort.abort();
    const event = text.split('\n\n').find((e) => e.includes('10.20.0.3')) ?? '';
    expect(event).toMatch(/^event: changes$/m);
    expect(event).toMatch(/^id: \d+$/m);
    const data = JSON.parse(/^data: (.*)$/m.exec(event)?.[1] ?? '[]') as { type: string; instance: Instance }[];
    expect(data.map((c) => [c.type, c.instance.host])).toContainEqual(['added', '10.20.0.3']);
  });

  it('isolates and restores a Dubbo provider through a consumer-side configurator, with a record', async () => {
    const id = `${APP}|dubbo|10.20.0.1:20880`;
    const node = `/${root}/config/dubbo/${IFACE}::.configurators`;
    const item = (address: string, parameters: object) => ({
      side: 'consumer',
      addresses: ['0.0.0.0'],
      providerAddresses: [address],
      parameters,
    });
    const read = async () => parse((await zk.getData(node))!.toString()) as { configs: unknown[] } & Record<string, unknown>;
    const created = await post<{ _id: string; state: string; actor: string; targets: string[] }>('/api/registry/controls', {
      action: 'isolate',
      instanceId: id,
      reason: 'bad host',
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ state: 'active', actor: `alice-${run}`, targets: [node] });
    expect(await read()).toEqual({
      configVersion: 'v3.0',
      scope: 'service',
      key: IFACE,
      enabled: true,
      configs: [item('10.20.0.1:20880', { disabled: true })],
    });
    expect((await post('/api/registry/controls', { action: 'isolate', instanceId: id })).status).toBe(409);

    const weighted = await post<{ _id: string }>('/api/registry/controls', {
      action: 'weight',
      instanceId: `${APP}|dubbo|10.20.0.2:20880`,
      weight: 10,
    });
    expect(weighted.status).toBe(201);
    expect((await read()).configs).toEqual([
      item('10.20.0.1:20880', { disabled: true }),
      item('10.20.0.2:20880', { weight: 10 }),
    ]);

    // Restoring writes disabled:false rather than deleting (Dubbo 3.3 consumers need it).
    const reverted = await post<{ state: string; revertedBy: string }>(`/api/registry/controls/${created.body._id}/revert`, {});
    expect(reverted.body).toMatchObject({ state: 'reverted', revertedBy: `alice-${run}` });
    expect((await read()).configs).toEqual([
      item('10.20.0.2:20880', { weight: 10 }),
      item('10.20.0.1:20880', { disabled: false }),
    ]);
    await post(`/api/registry/controls/${weighted.body._id}/revert`, {});
    expect((await read()).configs).toEqual([item('10.20.0.1:20880', { disabled: false })]);

    const record = await get<{ total: number; items: { action: string; state: string; reason: string }[] }>(
      `/api/registry/controls?application=${APP}`,
    );
    expect(record.body.items.map((c) => [c.action, c.state])).toEqual([
      ['weight', 'reverted'],
      ['isolate', 'reverted'],
    ]);
    expect(record.body.items[1]?.reason).toBe('bad host');
    const audit = await get<{ items: { action: string; actor: string }[] }>(
      `/api/audit?application=${APP}&action=control.isolate`,
    );
    expect(audit.body.items[0]).toMatchObject({ action: 'control.isolate', actor: `alice-${run}` });
  });

  it('isolates and restores a Eureka instance with the OUT_OF_SERVICE override', async () => {
    const id = `${APP}|http|10.20.0.1:8080`;
    const created = await post<{ _id: string; targets: string[] }>('/api/registry/controls', {
      action: 'isolate',
      instanceId: id,
    });
    expect(created.status).toBe(201);
    const eurekaStatus = async () => {
      const res = await fetch(`${stackEnv.EUREKA_URLS}/apps/${EUREKA_APP}`, { headers: { Accept: 'application/json' } });
      const body = (await res.json()) as { application: { instance: { status: string }[] } };
      return body.application.instance[0]?.status;
    };
    expect(await eurekaStatus()).toBe('OUT_OF_SERVICE');
    const seen = await until(
      () => get<Instance>(`/api/registry/instances/${encodeURIComponent(id)}`),
      (r) => r.body.status === 'OUT_OF_SERVICE',
    );
    expect(seen.body.status).toBe('OUT_OF_SERVICE');
    await post(`/api/registry/controls/${created.body._id}/revert`, {});
    expect(await eurekaStatus()).toBe('UP');
    expect((await post('/api/registry/controls', { action: 'weight', instanceId: id, weight: 5 })).status).toBe(400);
  });

  it('rejects malformed control requests with field-level messages', async () => {
    const bad = await post<{ issues: { path: string }[] }>('/api/registry/controls', {
      action: 'weight',
      instanceId: 'x',
      weight: -1,
    });
    expect(bad.status).toBe(400);
    expect(bad.body.issues.map((i) => i.path)).toEqual(['body.weight']);
    expect((await post('/api/registry/controls', { action: 'isolate', instanceId: 'nobody|dubbo|1.1.1.1:1' })).status).toBe(404);
  });
});
