import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../support/net.js';
import { killAll, SERVER_MAIN, startNode, waitForHttp } from '../support/processes.js';
import { stackEnv } from '../support/stack.js';

function startServer(env: Record<string, string>) {
  return startNode([SERVER_MAIN], env);
}

afterEach(() => killAll());

describe('the server process', () => {
  it('refuses to start on a bad environment, listing every bad or missing variable', async () => {
    const server = startServer({ PORT: 'eighty', LOG_LEVEL: 'loud', EUREKA_URLS: 'ftp://x' });
    const exit = await server.exited;
    expect(exit.code).toBe(1);
    const line = JSON.parse(server.output().stderr.trim().split('\n').pop() ?? '{}') as {
      level: number;
      errors: string[];
      msg: string;
    };
    expect(line.level).toBe(60);
    expect(line.errors.map((e) => e.split(':')[0])).toEqual(['EUREKA_URLS', 'KAFKA_BROKERS', 'LOG_LEVEL', 'MONGODB_URI', 'PORT']);
    expect(line.msg).toContain('KAFKA_BROKERS: is required');
  });

  it('logs JSON, and on SIGTERM turns unready, drains, then exits 0', async () => {
    const port = await freePort();
    const server = startServer({ ...stackEnv, PORT: String(port), SHUTDOWN_DRAIN_MS: '1500', LOG_LEVEL: 'info' });
    const url = `http://127.0.0.1:${port}`;
    await waitForHttp(`${url}/livez`);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);

    const signalled = Date.now();
    server.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    // Still serving during the drain, but no longer ready: a load balancer stops routing here.
    const draining = await fetch(`${url}/readyz`);
    expect(draining.status).toBe(503);
    expect(await draining.json()).toMatchObject({ status: 'shutting_down' });

    const exit = await server.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeGreaterThanOrEqual(1_500);

    const lines = server
      .output()
      .stdout.trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string; service: string });
    expect(lines.every((l) => l.service === 'steward' && typeof l.level === 'number')).toBe(true);
    expect(lines.some((l) => l.msg.includes(`Steward listening on http://127.0.0.1:${port}`))).toBe(true);
  });
});
