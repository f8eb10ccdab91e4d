import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SilentServer } from '../support/net.js';
import { startApp, type RunningApp } from '../support/app.js';
import { stack } from '../support/stack.js';

interface HealthBody {
  status: string;
  info: Record<string, { status: string } & Record<string, unknown>>;
  error: Record<string, { status: string; message?: string }>;
}

async function readyz(url: string): Promise<{ status: number; body: HealthBody }> {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as HealthBody };
}

async function eventually<T>(read: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await read();
  while (!accept(last) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    last = await read();
  }
  return last;
}

describe('server against the real stack', () => {
  let server: RunningApp;
  beforeAll(async () => {
    server = await startApp();
  });
  afterAll(() => server.close());

  it('GET /livez answers without touching any dependency', async () => {
    const res = await fetch(`${server.url}/livez`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
  });

  it('GET /readyz is green with the facts each real service answered', async () => {
    const { status, body } = await readyz(server.url);
    expect(status).toBe(200);
    expect(body.status).toBe('ok');
    expect(Object.keys(body.info).sort()).toEqual(['eureka', 'kafka', 'mongodb', 'zookeeper']);
    expect(body.info.kafka).toMatchObject({ status: 'up', brokers: 1, controller: 1 });
    expect(body.info.kafka?.clusterId).toEqual(expect.any(String));
    expect(body.info.mongodb?.version).toEqual(expect.stringMatching(/^\d+\.\d+/));
    expect(body.info.eureka).toMatchObject({ status: 'up' });
    expect(body.info.eureka?.applications).toEqual(expect.any(Number));
    expect(body.info.zookeeper?.session).toMatch(/^[0-9a-f]{16}$/);
  });

  it.each(['zookeeper', 'mongodb'] as const)('/readyz turns red when %s stops and green when it is back', async (service) => {
    try {
      await stack.down([service]);
      const red = await readyz(server.url);
      expect(red.status).toBe(503);
      expect(red.body.status).toBe('error');
      expect(Object.keys(red.body.error)).toEqual([service]);
      expect(red.body.error[service]?.status).toBe('down');
      expect(Object.keys(red.body.info).sort()).toEqual(['eureka', 'kafka', 'mongodb', 'zookeeper'].filter((s) => s !== service));
    } finally {
      await stack.up([service]);
    }
    const green = await eventually(
      () => readyz(server.url),
      (r) => r.status === 200,
    );
    expect(green.status).toBe(200);
    expect(green.body.info[service]?.status).toBe('up');
  });

  it('GET /metrics exposes process, HTTP and dependency metrics in Prometheus text', async () => {
    await fetch(`${server.url}/livez`);
    await fetch(`${server.url}/no/such/route/42`);
    await readyz(server.url);
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('# TYPE steward_http_request_duration_seconds histogram');
    expect(text).toMatch(/steward_http_request_duration_seconds_count\{method="GET",route="\/livez",status="200"\} [1-9]/);
    // An unknown path is counted under one label, never under its own URL.
    expect(text).toMatch(/steward_http_request_duration_seconds_count\{method="GET",route="unmatched",status="404"\} [1-9]/);
    expect(text).not.toContain('/no/such/route/42');
    for (const dependency of ['eureka', 'kafka', 'mongodb', 'zookeeper']) {
      expect(text).toContain(`steward_dependency_up{dependency="${dependency}"} 1`);
    }
    expect(text).toMatch(/steward_dependency_probe_duration_seconds_count\{dependency="kafka",outcome="up"\} [1-9]/);
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
  });

  it('serves the OpenAPI document and its UI', async () => {
    const doc = (await (await fetch(`${server.url}/docs/openapi.json`)).json()) as { openapi: string; paths: object };
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/livez', '/readyz', '/metrics']));
    const ui = await fetch(`${server.url}/docs`);
    expect(ui.status).toBe(200);
    expect(await ui.text()).toContain('swagger-ui');
  });
});

describe('readiness with a hung dependency', () => {
  const hung = new SilentServer();
  let server: RunningApp;
  beforeAll(async () => {
    await hung.start();
    server = await startApp({ EUREKA_URLS: `http://127.0.0.1:${hung.port}/eureka`, READINESS_TIMEOUT_MS: '500' });
  });
  afterAll(async () => {
    await server.close();
    await hung.stop();
  });

  it('answers 503 within the configured time, naming the dependency that timed out', async () => {
    const started = Date.now();
    const { status, body } = await readyz(server.url);
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(status).toBe(503);
    expect(Object.keys(body.error)).toEqual(['eureka']);
    expect(body.error.eureka?.message).toMatch(/timeout/i);
    expect(body.info.kafka?.status).toBe('up');
  });
});
