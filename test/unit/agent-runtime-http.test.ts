import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenOnLoopback } from '../support/net.js';
import {
  APP,
  concurrency,
  errorCount,
  FakeSteward,
  forced,
  inbound,
  outbound,
  path,
  qps,
  REGISTER,
  ROOT,
  runNode,
  until,
} from './agent-runtime-support.js';

// The built agent preloaded into real Node processes: inbound and outbound interception against
// real HTTP servers, fail-static start from the state file, and processes that exit on their own.

const EXPRESS = createRequire(import.meta.url).resolve('express');
const UNREACHABLE = 'http://127.0.0.1:9'; // discard port: nothing listens, connecting fails at once

let dir: string;
let callee: Server;
let calleePort = 0;
const steward = new FakeSteward();

function script(name: string, source: string): string {
  const file = join(dir, name);
  writeFileSync(file, source);
  return file;
}

const env = (extra: Record<string, string> = {}) => ({
  STEWARD_APPLICATION: 'orders',
  STEWARD_SERVER_URL: UNREACHABLE,
  STEWARD_STATE_DIR: dir,
  ...extra,
});

beforeAll(async () => {
  execFileSync(process.execPath, [join(ROOT, 'agent/build.mjs')]);
  dir = mkdtempSync(join(tmpdir(), 'steward-agent-http-'));
  callee = createServer((req, res) => {
    if (req.url?.startsWith('/fail')) res.statusCode = 500;
    const reply = () =>
      res.end(JSON.stringify({ url: req.url, method: req.method, caller: req.headers['x-steward-caller'] ?? null }));
    if (req.url?.startsWith('/slow')) setTimeout(reply, 150);
    else reply();
  });
  calleePort = await listenOnLoopback(callee);
  await steward.start();
});

afterAll(async () => {
  callee.close();
  await steward.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('inbound, from the rules saved on disk, without a server', () => {
  const APP_SOURCE = `
    const express = require(process.env.EXPRESS);
    const app = express();
    for (const route of ['/forced', '/limited', '/from-web', '/queued']) app.get(route, (req, res) => res.send('app'));
    for (const route of ['/slow', '/gone']) app.get(route, (req, res) => setTimeout(() => res.send('slow'), 200));
    app.get('/fail', (req, res) => res.status(500).send('boom'));
    app.post('/shutdown', (req, res) => {
      res.on('finish', () => { server.close(); server.closeAllConnections(); });
      res.send(JSON.stringify(globalThis[Symbol.for('steward.agent')].status()));
    });
    const server = app.listen(0, '127.0.0.1', () => console.log(server.address().port));
  `;

  it('answers, limits, queues and breaks before the application sees the request, then exits', async () => {
    writeFileSync(
      join(dir, 'orders.rules.json'),
      JSON.stringify({
        application: 'orders',
        revision: 4,
        savedAt: 1,
        rules: [
          forced('d1', inbound(path('/forced'))),
          qps('l1', inbound(path('/limited')), 0.001),
          forced('w1', inbound(path('/from-web'), 'web'), { status: 202, body: 'web fallback' }),
          qps('q1', inbound(path('/queued')), 10, 1_000),
          concurrency('c1', inbound(path('/slow')), 1),
          errorCount('b1', inbound(path('/fail')), 2),
          qps('q2', inbound(path('/gone')), 5, 1_000),
          concurrency('c2', inbound(path('/gone')), 2),
        ],
      }),
    );
    const lines: string[] = [];
    const child = runNode([script('inbound.cjs', APP_SOURCE)], env({ EXPRESS }), (line) => lines.push(line));
    const base = `http://127.0.0.1:${await until(() => lines[0], 'the port')}`;
    const get = async (route: string, init?: RequestInit) => {
      const res = await fetch(`${base}${route}`, init);
      return {
        status: res.status,
        reason: res.headers.get('x-steward-reason'),
        rule: res.headers.get('x-steward-rule'),
        body: await res.text(),
      };
    };

    expect(await get('/forced')).toEqual({ status: 418, reason: 'degraded-forced', rule: 'd1', body: 'fallback' });
    expect(await get('/forced', { method: 'HEAD' })).toMatchObject({ status: 418, body: '' });
    expect(await get('/limited')).toMatchObject({ status: 200, body: 'app' });
    expect(await get('/limited')).toEqual({ status: 429, reason: 'limited', rule: 'l1', body: '' });
    expect(await get('/from-web')).toMatchObject({ status: 200, body: 'app' });
    expect(await get('/from-web', { headers: { 'x-steward-caller': 'WEB' } })).toMatchObject({
      status: 202,
      body: 'web fallback',
    });
    expect(await get('/from-web', { headers: { 'x-steward-caller': 'mobile' } })).toMatchObject({ status: 200 });

    const started = Date.now();
    const queued = await Promise.all([get('/queued'), get('/queued'), get('/queued')]);
    expect(queued.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(180);

    const slow = await Promise.all([get('/slow'), get('/slow')]);
    expect(slow.map((r) => r.status).sort()).toEqual([200, 429]);
    expect(await get('/slow')).toMatchObject({ status: 200 }); // the slot came back on completion

    // A client that leaves while its request waits in the queue (200 ms) gives its concurrency slot
    // back: the third request finds one free. (The pause lets the server see the connection close.)
    const first = get('/gone');
    const leaving = new AbortController();
    const second = fetch(`${base}/gone`, { signal: leaving.signal }).catch((error: Error) => error.name);
    await new Promise((resolve) => setTimeout(resolve, 30));
    leaving.abort();
    expect(await second).toBe('AbortError');
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(await get('/gone')).toMatchObject({ status: 200 });
    expect(await first).toMatchObject({ status: 200 });

    expect((await get('/fail')).status).toBe(500);
    expect((await get('/fail')).status).toBe(500);
    expect(await get('/fail')).toMatchObject({ status: 503, reason: 'breaker-open', rule: 'b1' });

    const status = JSON.parse((await get('/shutdown', { method: 'POST' })).body) as Record<string, unknown>;
    expect(status).toMatchObject({
      enabled: true,
      connected: false,
      appliedRevision: 4,
      internalErrors: 0,
      ports: [Number(lines[0])],
    });
    const result = await child;
    expect(result.code).toBe(0);
    expect(result.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^\[steward-agent\] .*"level":"warn".*cannot reach the server/),
    ]);
  });
});

describe('outbound, with rules and peers pushed by the server', () => {
  const APP_SOURCE = `
    const http = require('node:http');
    const https = require('node:https');
    const agent = globalThis[Symbol.for('steward.agent')];
    const base = 'http://127.0.0.1:' + process.env.CALLEE_PORT;
    const collect = (resolve) => (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode, reason: res.headers['x-steward-reason'] ?? null, body }));
    };
    const send = (fn, ...args) => new Promise((resolve, reject) => {
      const req = fn(...args, collect(resolve));
      req.on('error', reject);
      if (!req.writableEnded) req.end();
    });
    const grab = async (input, init) => {
      const res = await fetch(input, init);
      return { status: res.status, reason: res.headers.get('x-steward-reason'), body: await res.text() };
    };
    const caller = (r) => JSON.parse(r.body).caller;
    const timed = async (calls) => { const t = Date.now(); const r = await Promise.all(calls()); return { statuses: r.map((x) => x.status), ms: Date.now() - t }; };

    (async () => {
      while (agent.status().appliedRevision !== 9 || agent.status().peers !== 1) await new Promise((r) => setTimeout(r, 10));
      const server = http.createServer((req, res) => res.end());
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      const out = { port: server.address().port };
      out.callers = [
        caller(await send(http.request, { host: '127.0.0.1', port: process.env.CALLEE_PORT, path: '/echo' })),
        caller(await send(http.request, base + '/echo', { method: 'POST' })),
        caller(await send(http.get, new URL(base + '/echo'), { headers: { 'X-Steward-Caller': 'custom' } })),
        caller(await grab(base + '/echo')),
        caller(await grab(new Request(base + '/echo', { headers: { 'x-steward-caller': 'custom' } }))),
      ];
      out.degraded = [
        await send(http.get, base + '/degraded'),
        await send(http.request, { host: 'stock', port: 8080, path: '/degraded', method: 'POST' }),
        await send(https.get, 'https://stock/degraded'),
        await grab(base + '/degraded'),
        await grab('https://stock/degraded', { method: 'HEAD' }),
      ];
      out.breaker = [
        (await grab(base + '/fail')).status,
        (await send(http.get, base + '/fail')).status,
        await grab(base + '/fail'),
        await send(http.get, base + '/fail'),
      ];
      out.queuedRequests = await timed(() => [1, 2, 3].map(() => send(http.get, base + '/queued')));
      out.queuedFetches = await timed(() => [1, 2, 3].map(() => grab(base + '/queued')));
      const viaSocket = { createConnection: (options) => require('node:net').connect(options) };
      out.queuedSockets = await timed(() => [1, 2, 3].map(() => send(http.get, base + '/queued', viaSocket)));
      out.concurrent = [
        ...(await Promise.all([send(http.get, base + '/slow'), send(http.get, base + '/slow')])).map((r) => r.status).sort(),
        (await send(http.get, base + '/slow')).status,
        ...(await Promise.all([grab(base + '/slow'), grab(base + '/slow')])).map((r) => r.status).sort(),
        (await grab(base + '/slow')).status,
      ];
      // The second call waits for the queue, and meanwhile the first one's 500 opens the breaker.
      const pair = (first, second) => Promise.all([first(), second()]).then((r) => r.map((x) => [x.status, x.reason]));
      out.waitedThenBroken = [
        await pair(() => send(http.get, base + '/fail/r'), () => send(http.get, base + '/fail/r', { agent: false })),
        await pair(() => grab(base + '/fail/f'), () => grab(base + '/fail/f')),
        await pair(() => send(http.get, base + '/fail/c', viaSocket), () => send(http.get, base + '/fail/c', viaSocket)),
      ];
      out.refused = [
        await grab('http://127.0.0.1:9/').then(() => 'answered', (e) => e.name),
        await send(http.get, 'http://127.0.0.1:9/').then(() => 'answered', (e) => e.code),
      ];
      out.status = agent.status();
      console.log(JSON.stringify(out));
      server.close();
    })();
  `;

  it('labels every request, answers, queues and breaks outbound calls, then exits while connected', async () => {
    const rules = [
      forced('d2', outbound('stock', path('/degraded')), { status: 203, body: 'cached' }),
      errorCount('b2', outbound('stock', path('/fail')), 2),
      qps('q2', outbound('stock', path('/queued')), 10, 1_000),
      concurrency('c2', outbound('stock', path('/slow')), 1),
      concurrency('c3', outbound('stock', APP), 1_000),
      ...['r', 'f', 'c'].flatMap((kind) => [
        errorCount(`b-${kind}`, outbound('stock', path(`/fail/${kind}`)), 1),
        qps(`q-${kind}`, outbound('stock', path(`/fail/${kind}`)), 5, 1_000),
      ]),
    ];
    const hellos = steward.frames('hello').length;
    const lines: string[] = [];
    const child = runNode(
      [script('outbound.cjs', APP_SOURCE)],
      env({ STEWARD_SERVER_URL: steward.url, STEWARD_AGENT_TOKEN: 'stw_t', CALLEE_PORT: String(calleePort) }),
      (line) => lines.push(line),
    );
    const hello = await steward.next('hello', hellos);
    hello.socket.emit('snapshot', { type: 'snapshot', application: 'orders', revision: 9, rules });
    hello.socket.emit('peers', {
      type: 'peers',
      application: 'orders',
      addresses: [{ address: `127.0.0.1:${calleePort}`, application: 'stock' }],
    });
    const result = await child;
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const out = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;

    expect(out.callers).toEqual(['orders', 'orders', 'custom', 'orders', 'custom']);
    const answer = { status: 203, reason: 'degraded-forced', body: 'cached' };
    expect(out.degraded).toEqual([answer, answer, answer, answer, { ...answer, body: '' }]);
    expect(out.breaker).toEqual([
      500,
      500,
      { status: 503, reason: 'breaker-open', body: '' },
      { status: 503, reason: 'breaker-open', body: '' },
    ]);
    for (const queued of [out.queuedRequests, out.queuedFetches, out.queuedSockets] as { statuses: number[]; ms: number }[]) {
      expect(queued.statuses).toEqual([200, 200, 200]);
      expect(queued.ms).toBeGreaterThanOrEqual(150);
    }
    expect(out.concurrent).toEqual([200, 429, 200, 200, 429, 200]);
    const broken = [
      [500, null],
      [503, 'breaker-open'],
    ];
    expect(out.waitedThenBroken).toEqual([broken, broken, broken]);
    expect(out.refused).toEqual(['TypeError', 'ECONNREFUSED']);
    expect(out.status).toMatchObject({ connected: true, appliedRevision: 9, internalErrors: 0, invalidFrames: 0 });

    const sent = steward.received.filter((r) => r.socket === hello.socket);
    expect(sent.every((r) => r.valid)).toBe(true);
    expect(sent.find((r) => r.type === 'ack')?.frame).toEqual({ type: 'ack', revision: 9 });
    expect(sent.find((r) => r.type === 'breaker-state')?.frame).toMatchObject({ ruleId: 'b2', state: 'OPEN' });
    expect(hello.frame.ports).toEqual([]);
    expect(hello.frame.run).toMatch(/^[A-Za-z0-9_-]{16}$/); // random per process: its frames' seqs start at 1
    expect(sent.filter((r) => r.type === 'listening').map((r) => r.frame.ports)).toEqual([[out.port], []]);
    expect(steward.tokens.at(-1)).toBe('stw_t');
  });
});

describe('loading', () => {
  it('serves ESM named imports of node:http through --import', async () => {
    const file = script(
      'esm.mjs',
      `import { get } from 'node:http';
       get('http://127.0.0.1:${calleePort}/echo', (res) => { res.setEncoding('utf8'); res.on('data', (d) => console.log(d)); });`,
    );
    const result = await runNode([file], env({ STEWARD_LOG: 'silent' }), undefined, ['--import', REGISTER]);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ caller: 'orders' });
  });

  it('starts once when loaded twice', async () => {
    const file = script('twice.cjs', `console.log(JSON.stringify(globalThis[Symbol.for('steward.agent')].status()));`);
    const result = await runNode([file], env(), undefined, ['--require', REGISTER, '--import', REGISTER]);
    expect(result.code).toBe(0);
    expect(result.stderr.match(/cannot reach the server/g)).toHaveLength(1);
  });

  it.each([
    [
      'misconfigured',
      { STEWARD_APPLICATION: 'Not An App' },
      /^\[steward-agent\] .*"level":"warn".*not started: STEWARD_APPLICATION must be/,
    ],
    ['disabled', { STEWARD_AGENT_ENABLED: 'false' }, /^$/],
  ])('stays inert when %s, and the application runs', async (_name, extra, stderr) => {
    const file = script('inert.cjs', `console.log(JSON.stringify(globalThis[Symbol.for('steward.agent')].status()));`);
    const result = await runNode([file], env(extra));
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ enabled: false });
    expect(result.stderr.trim()).toMatch(stderr);
  });

  it.each([
    ['no server is reachable', () => UNREACHABLE],
    ['it is connected', () => steward.url],
  ])('lets a script exit when its work is done while %s', async (_name, url) => {
    const result = await runNode(
      ['-e', 'setTimeout(() => console.log("done"), 300)'],
      env({ STEWARD_SERVER_URL: url(), STEWARD_LOG: 'silent' }),
    );
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('done\n');
    expect(result.ms).toBeLessThan(2_000);
  });
});
