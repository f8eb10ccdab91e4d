/**
 * Governance benchmark: write and list latency of the rule API with 10,000 rules in one
 * application, against a real Steward server process and the local stack's database (FerretDB
 * 1.x on SQLite: figures are FerretDB's, not MongoDB's).
 *
 *   npm run bench:governance           (stack up and `npm run build` first)
 *
 * Writes docs/benchmarks.md's governance section.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/support/net.js';
import { machine, percentile, writeSection } from './report.js';
import { stackEnv } from '../test/support/stack.js';

const RULES = Number(process.env.BENCH_RULES ?? 10_000);
const run = Date.now().toString(36);
const APP = `bench-gov-${run}`;
const TOKEN = `bench-admin-token-${run}-0123456789`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ruleNo = (i: number) => ({
  kind: 'limit',
  target: { direction: 'inbound', resource: { type: 'http', method: 'GET', path: `/api/items/${i}/{id}` } },
  limit: { mode: 'qps', permitsPerSec: 100 + (i % 50) },
});

async function main(): Promise<void> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server = spawn(process.execPath, [fileURLToPath(new URL('../dist/main.js', import.meta.url))], {
    env: {
      ...process.env,
      MONGODB_URI: stackEnv.MONGODB_URI,
      KAFKA_BROKERS: stackEnv.KAFKA_BROKERS,
      PORT: String(port),
      LOG_LEVEL: 'warn',
      ADMIN_TOKEN: TOKEN,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const api = async (path: string, init: RequestInit = {}) => {
    const started = performance.now();
    const res = await fetch(`${url}${path}`, {
      ...init,
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json', ...init.headers },
    });
    const body = await res.text();
    if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${body.slice(0, 200)}`);
    return { ms: performance.now() - started, body };
  };
  const results: [string, string][] = [];
  try {
    for (let i = 0; ; i++) {
      try {
        await fetch(`${url}/livez`);
        break;
      } catch {
        if (i > 200) throw new Error('server did not start');
        await sleep(100);
      }
    }
    const writes: number[] = [];
    const marks = new Map<number, number[]>();
    const t0 = performance.now();
    for (let i = 0; i < RULES; i++) {
      const { ms } = await api(`/api/applications/${APP}/rules`, { method: 'POST', body: JSON.stringify({ rule: ruleNo(i) }) });
      writes.push(ms);
      const bucket = Math.floor(i / 1_000);
      marks.set(bucket, [...(marks.get(bucket) ?? []), ms]);
      if (i % 1_000 === 999)
        console.log(`${i + 1} rules written, last 1,000: p50 ${percentile(marks.get(bucket)!, 50).toFixed(1)} ms`);
    }
    const total = (performance.now() - t0) / 1000;
    results.push([
      `create ${RULES} rules one by one (each a new revision): total`,
      `${total.toFixed(1)} s (${(RULES / total).toFixed(0)} writes/s)`,
    ]);
    results.push([
      'create: p50 / p99 over all writes',
      `${percentile(writes, 50).toFixed(1)} / ${percentile(writes, 99).toFixed(1)} ms`,
    ]);
    const first = marks.get(0) ?? [];
    const last = marks.get(Math.floor((RULES - 1) / 1_000)) ?? [];
    results.push([
      'create: p50 of the first 1,000 / of the last 1,000',
      `${percentile(first, 50).toFixed(1)} / ${percentile(last, 50).toFixed(1)} ms`,
    ]);

    const updates: number[] = [];
    const { body } = await api(`/api/applications/${APP}/rules`);
    const ids = (JSON.parse(body) as { rules: { id: string }[] }).rules.map((r) => r.id);
    for (let k = 0; k < 100; k++) {
      const id = ids[(k * 97) % ids.length]!;
      const { ms } = await api(`/api/applications/${APP}/rules/${id}`, {
        method: 'PUT',
        body: JSON.stringify({ rule: { ...ruleNo((k * 97) % ids.length), enabled: k % 2 === 0 } }),
      });
      updates.push(ms);
    }
    results.push([
      `update one rule among ${RULES}: p50 / p99 (100 updates)`,
      `${percentile(updates, 50).toFixed(1)} / ${percentile(updates, 99).toFixed(1)} ms`,
    ]);

    const full: number[] = [];
    const paged: number[] = [];
    for (let k = 0; k < 10; k++) {
      full.push((await api(`/api/applications/${APP}/rules`)).ms);
      paged.push((await api(`/api/rules?application=${APP}&page=${k + 1}&pageSize=100`)).ms);
    }
    results.push([
      `read the whole rule set (${RULES} rules, with conflict check): p50 / max`,
      `${percentile(full, 50).toFixed(0)} / ${Math.max(...full).toFixed(0)} ms`,
    ]);
    results.push([
      'list one page of 100 rules: p50 / max',
      `${percentile(paged, 50).toFixed(0)} / ${Math.max(...paged).toFixed(0)} ms`,
    ]);
    const history: number[] = [];
    for (let k = 0; k < 10; k++) history.push((await api(`/api/applications/${APP}/rules/history?pageSize=50`)).ms);
    results.push(['history, newest 50 revisions: p50', `${percentile(history, 50).toFixed(0)} ms`]);
  } finally {
    server.kill('SIGTERM');
  }

  const table = ['| measure | result |', '|---|---|', ...results.map(([m, r]) => `| ${m} | ${r} |`)].join('\n');
  console.log(table);
  await writeSection('governance', [
    '## Governance (rule API)',
    '',
    `Run ${new Date().toISOString().slice(0, 10)} on ${machine()}, with \`npm run bench:governance\`: one Steward server process, one`,
    `application with ${RULES} HTTP limit rules written one at a time through the REST API, into the local stack's FerretDB 1.24`,
    '(SQLite backend; FerretDB scans for range filters and sorts, so these are FerretDB figures, not MongoDB ones).',
    '',
    table,
  ]);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
