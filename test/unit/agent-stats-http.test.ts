import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { CallRecord } from '../../agent/src/runtime/records.js';
import type { StatsEntry } from '../../agent/src/engine/types.js';
import { listenOnLoopback } from '../support/net.js';
import { FakeSteward, forced, inbound, path, ROOT, runNode, until, type Received } from './agent-runtime-support.js';

// The built agent preloaded into a real application: trace ids from inbound requests to the
// outbound calls made while handling them, and the stats and records frames the server receives.

const EXPRESS = createRequire(import.meta.url).resolve('express');
const TRACE = '00112233445566778899aabbccddeeff';
const HEX16 = /^[0-9a-f]{16}$/;

let dir: string;
let callee: Server;
let calleePort = 0;
const steward = new FakeSteward();

beforeAll(async () => {
  execFileSync(process.execPath, [join(ROOT, 'agent/build.mjs')]);
  dir = mkdtempSync(join(tmpdir(), 'steward-agent-stats-'));
  // Echoes the labels each outbound call arrived with.
  callee = createServer((req, res) =>
    res.end(
      JSON.stringify({
        trace: req.headers['x-steward-trace'] ?? null,
        caller: req.headers['x-steward-caller'] ?? null,
        user: req.headers['x-user'] ?? null,
      }),
    ),
  );
  calleePort = await listenOnLoopback(callee);
  await steward.start();
});

afterAll(async () => {
  callee.close();
  await steward.stop();
  rmSync(dir, { recursive: true, force: true });
});

const APP_SOURCE = `
  const http = require('node:http');
  const express = require(process.env.EXPRESS);
  const agent = globalThis[Symbol.for('steward.agent')];
  const callee = 'http://127.0.0.1:' + process.env.CALLEE_PORT + '/echo';
  const viaHttp = () => new Promise((resolve, reject) => {
    http.get(callee, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve(JSON.parse(body)));
    }).on('error', reject);
  });
  const viaFetch = (headers) => fetch(callee, { headers }).then((res) => res.json());

  const app = express();
  app.use(express.json());
  // Runs after the JSON body was read: in the request body's 'end' event.
  app.post('/chain', async (req, res) => {
    res.json({ fetch: await viaFetch({ 'x-user': req.body.user }), http: await viaHttp() });
  });
  app.get('/timer', (req, res) => setTimeout(() => viaHttp().then((echo) => res.json(echo)), 20));
  app.get('/fail', (req, res) => res.status(500).send('boom'));
  // 90 ms asleep, 80 asserted: a timer may fire a fraction of a millisecond early by the hrtime clock.
  app.get('/slow', (req, res) => setTimeout(() => res.send('slow'), 90));
  app.post('/shutdown', (req, res) => {
    res.on('finish', () => { server.close(); server.closeAllConnections(); });
    res.json(agent.status());
  });
  const server = app.listen(0, '127.0.0.1', async () => {
    console.log(server.address().port);
    // Outside any request: a trace of its own.
    console.log(JSON.stringify(await viaFetch({})));
  });
`;

describe('statistics and call records of a real application', () => {
  it('carries the inbound trace id to outbound calls, and reports stats and records frames', async () => {
    const script = join(dir, 'app.cjs');
    writeFileSync(script, APP_SOURCE);
    const hellos = steward.frames('hello').length;
    const lines: string[] = [];
    const child = runNode(
      [script],
      {
        STEWARD_APPLICATION: 'orders',
        STEWARD_SERVER_URL: steward.url,
        STEWARD_STATE_DIR: dir,
        STEWARD_RECORD_SAMPLE: '100%',
        STEWARD_RECORD_HEADERS: 'x-tenant, X-User',
        STEWARD_TRACE_PROPAGATION: 'true',
        EXPRESS,
        CALLEE_PORT: String(calleePort),
      },
      (line) => lines.push(line),
    );
    onTestFinished(() => child.kill());
    const hello = await steward.next('hello', hellos);
    hello.socket.emit('snapshot', {
      type: 'snapshot',
      application: 'orders',
      revision: 3,
      rules: [
        forced('off', inbound(path('/blocked'))),
        {
          id: 'slow',
          kind: 'breaker',
          application: 'orders',
          target: inbound(path('/slow')),
          breaker: { strategy: 'slowCallRatio', slowCallMs: 50, minCalls: 1_000 },
        },
      ],
    });
    await steward.next('ack', 0, (f) => f.revision === 3);
    const base = `http://127.0.0.1:${await until(() => lines[0], 'the port')}`;
    const outside = JSON.parse(await until(() => lines[1], 'the call made outside any request')) as { trace: string };

    const post = async (headers: Record<string, string>) => {
      const res = await fetch(`${base}/chain`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ user: 'u-1' }),
      });
      return (await res.json()) as Record<string, { trace: string; caller: string; user: string | null }>;
    };
    const traced = await post({ 'x-steward-trace': TRACE.toUpperCase(), 'x-tenant': 'acme' });
    expect(traced).toEqual({
      fetch: { trace: TRACE, caller: 'orders', user: 'u-1' },
      http: { trace: TRACE, caller: 'orders', user: null },
    });
    const fresh = await post({});
    expect(fresh.fetch!.trace).toMatch(HEX16);
    expect(fresh.http!.trace).toBe(fresh.fetch!.trace);
    const timer = (await (await fetch(`${base}/timer`, { headers: { 'x-steward-trace': 'not-a-trace' } })).json()) as {
      trace: string;
    };
    expect(timer.trace).toMatch(HEX16);
    expect(outside.trace).toMatch(HEX16);
    expect(new Set([TRACE, fresh.fetch!.trace, timer.trace, outside.trace]).size).toBe(4);

    expect((await fetch(`${base}/fail`)).status).toBe(500);
    expect((await fetch(`${base}/blocked`)).status).toBe(418);
    expect((await fetch(`${base}/slow`)).status).toBe(200);

    // Frames come once a second, for the seconds that have ended.
    const mine = () => steward.received.filter((r) => r.socket === hello.socket);
    const records = () => mine().flatMap((r) => (r.type === 'records' ? (r.frame.records as CallRecord[]) : []));
    const entries = () => mine().flatMap((r) => (r.type === 'stats' ? (r.frame.entries as StatsEntry[]) : []));
    const total = (direction: string, resource: string, counter: keyof StatsEntry) =>
      entries()
        .filter((e) => e.direction === direction && e.resource === resource)
        .reduce((n, e) => n + (e[counter] as number), 0);
    await until(() => (records().some((r) => r.path === '/slow') ? true : undefined), 'the record of /slow');
    await until(() => (total('inbound', 'GET /slow', 'calls') === 1 ? true : undefined), 'the statistics of /slow');

    const byTrace = records().filter((r) => r.traceId === TRACE);
    expect(byTrace.map((r) => [r.direction, r.method, r.path, r.kept])).toEqual([
      ['outbound', 'GET', '/echo', 'sampled'],
      ['outbound', 'GET', '/echo', 'sampled'],
      ['inbound', 'POST', '/chain', 'sampled'],
    ]);
    // The callee runs no agent and the server named no address: it is reported by its address.
    expect(byTrace[0]).toMatchObject({
      caller: 'orders',
      callee: `127.0.0.1:${calleePort}`,
      status: 200,
      outcome: 'success',
      details: { 'x-tenant': 'acme', 'x-user': 'u-1' },
    });
    expect(byTrace[2]).toMatchObject({ caller: '', callee: 'orders', status: 200, details: { 'x-tenant': 'acme' } });
    expect(records().filter((r) => r.traceId === fresh.fetch!.trace)).toHaveLength(3);
    expect(
      records()
        .filter((r) => r.traceId === timer.trace)
        .map((r) => r.direction),
    ).toEqual(['outbound', 'inbound']);
    expect(records().filter((r) => r.traceId === outside.trace)).toMatchObject([{ direction: 'outbound' }]);
    expect(records().find((r) => r.path === '/fail')).toMatchObject({ outcome: 'error', kept: 'error', status: 500 });
    expect(records().find((r) => r.path === '/blocked')).toMatchObject({
      outcome: 'degraded',
      kept: 'blocked',
      status: 418,
      ruleId: 'off',
      latencyMs: 0,
    });
    expect(records().find((r) => r.path === '/slow')).toMatchObject({ outcome: 'success', kept: 'slow', status: 200 });
    expect(records().find((r) => r.path === '/slow')!.latencyMs).toBeGreaterThanOrEqual(80);

    expect(total('inbound', 'POST /chain', 'calls')).toBe(2);
    expect(total('inbound', 'POST /chain', 'successes')).toBe(2);
    expect(total('inbound', 'GET /fail', 'errors')).toBe(1);
    expect(total('inbound', 'GET /blocked', 'degraded')).toBe(1);
    expect(total('inbound', 'GET /slow', 'slow')).toBe(1);
    expect(total('outbound', 'GET /echo', 'calls')).toBe(6);
    expect(new Set(entries().flatMap((e) => (e.direction === 'outbound' ? [e.peer] : [])))).toEqual(
      new Set([`127.0.0.1:${calleePort}`]),
    );

    const seqs = (type: string) =>
      mine()
        .filter((r: Received) => r.type === type)
        .map((r) => r.frame.seq as number);
    expect(seqs('stats')).toEqual(seqs('stats').map((_, i) => i + 1));
    expect(seqs('records')).toEqual(seqs('records').map((_, i) => i + 1));
    expect(mine().every((r) => r.valid)).toBe(true);

    const status = (await (await fetch(`${base}/shutdown`, { method: 'POST' })).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ internalErrors: 0, stats: { dropped: 0 }, records: { dropped: 0 } });
    const result = await child;
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
  });

  it('gives outbound calls trace ids of their own when trace propagation is off (the default)', async () => {
    const script = join(dir, 'app-off.cjs');
    writeFileSync(script, APP_SOURCE);
    const lines: string[] = [];
    const child = runNode(
      [script],
      {
        STEWARD_APPLICATION: 'orders',
        STEWARD_SERVER_URL: 'http://127.0.0.1:9',
        STEWARD_STATE_DIR: dir,
        STEWARD_LOG: 'silent',
        EXPRESS,
        CALLEE_PORT: String(calleePort),
      },
      (line) => lines.push(line),
    );
    onTestFinished(() => child.kill());
    const base = `http://127.0.0.1:${await until(() => lines[0], 'the port')}`;
    const res = await fetch(`${base}/chain`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-steward-trace': TRACE },
      body: JSON.stringify({ user: 'u-2' }),
    });
    const echo = (await res.json()) as Record<string, { trace: string; caller: string }>;
    expect(echo.fetch).toMatchObject({ trace: expect.stringMatching(HEX16) as string, caller: 'orders' });
    expect(echo.http!.trace).toMatch(HEX16);
    expect(new Set([TRACE, echo.fetch!.trace, echo.http!.trace]).size).toBe(3);
    await fetch(`${base}/shutdown`, { method: 'POST' });
    expect((await child).code).toBe(0);
  });
});
