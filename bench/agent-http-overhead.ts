/**
 * Whole-request overhead of the Node agent: a hello-world HTTP server's throughput without the
 * agent and with it preloaded (connected to a real Steward server, enforcing a limit and a
 * breaker that match every request and never reject), same load tool, same run, alternating
 * rounds so drift hits both alike.
 *
 *   npm run bench:agent-http      (stack up and `npm run build` first)
 *
 * Writes docs/benchmarks.md's agent-http section.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { freePort } from '../test/support/net.js';
import { AGENT_REGISTER, eventually, killAll, SERVER_MAIN, startNode, waitForHttp } from '../test/support/processes.js';
import { stackEnv } from '../test/support/stack.js';
import { machine, writeSection } from './report.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const DURATION_SEC = Number(process.env.BENCH_DURATION_SEC ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const run = Date.now().toString(36);
const APP = `bench-http-${run}`;
const ADMIN = `bench-admin-token-${run}-0123456789`;

const HELLO = `
const { createServer } = require('node:http');
const server = createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('hello'); });
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ listening: server.address().port })));
`;

interface Round {
  requestsPerSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  /** The app process's CPU time (user + system) per request, µs. */
  cpuPerRequestUs: number;
}

/** utime + stime of a process, in clock ticks (100 per second on Linux). */
function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

async function load(url: string, pid: number): Promise<Round> {
  const before = cpuTicks(pid);
  const result = await autocannon({ url, connections: CONNECTIONS, duration: DURATION_SEC, pipelining: 1 });
  const ticks = cpuTicks(pid) - before;
  return {
    requestsPerSec: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx + result.errors,
    cpuPerRequestUs: (ticks * 10_000) / result.requests.total,
  };
}

async function main(): Promise<void> {
  const port = await freePort();
  const server = `http://127.0.0.1:${port}`;
  // The stats aggregator runs elsewhere in a deployment; here it would take the app's cores whenever the agent reports.
  startNode([SERVER_MAIN], { ...stackEnv, PORT: String(port), ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'warn', STATS_AGGREGATOR: 'off' });
  await waitForHttp(`${server}/livez`);
  const api = async (path: string, json: unknown) => {
    const res = await fetch(`${server}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify(json),
    });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as Record<string, unknown>;
  };
  const { token } = (await api('/api/tokens', { name: `bench-${run}`, role: 'agent' })) as { token: string };
  await api(`/api/applications/${APP}/rules`, {
    rule: {
      kind: 'limit',
      target: { direction: 'inbound', resource: { type: 'http', path: '/**' } },
      limit: { mode: 'qps', permitsPerSec: 1_000_000 },
    },
  });
  await api(`/api/applications/${APP}/rules`, {
    rule: {
      kind: 'degrade',
      target: { direction: 'inbound', resource: { type: 'http', path: '/degraded' } },
      force: true,
      fallback: { http: { status: 299, body: 'degraded' } },
    },
  });
  const last = (await api(`/api/applications/${APP}/rules`, {
    rule: {
      kind: 'breaker',
      target: { direction: 'inbound', resource: { type: 'application' } },
      breaker: { strategy: 'errorRatio', threshold: 0.5 },
    },
  })) as { revision: number };

  const plain = startNode(['-e', HELLO], {});
  const agent = startNode(['--import', AGENT_REGISTER, '-e', HELLO], {
    STEWARD_SERVER_URL: server,
    STEWARD_APPLICATION: APP,
    STEWARD_AGENT_TOKEN: token,
    STEWARD_STATE_DIR: mkdtempSync(join(tmpdir(), 'steward-bench-')),
    STEWARD_HOST: '127.0.0.1',
  });
  const isPort = (v: Record<string, unknown>) => typeof v['listening'] === 'number';
  const plainUrl = `http://127.0.0.1:${(await plain.line<{ listening: number }>(isPort)).listening}/`;
  const agentUrl = `http://127.0.0.1:${(await agent.line<{ listening: number }>(isPort)).listening}/`;
  await eventually(
    async () => {
      const res = await fetch(`${server}/api/applications/${APP}/revisions/${last.revision}/acks`, {
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      return ((await res.json()) as { acknowledged: number }).acknowledged === 1 ? true : undefined;
    },
    20_000,
    'the agent to apply the rules',
  );
  // The agent really guards this app: a forced degrade on one path answers for it.
  const probe = await fetch(`${agentUrl}degraded`);
  if (probe.status !== 299) throw new Error(`the agent is not enforcing (status ${probe.status})`);
  const plainPid = plain.child.pid!;
  const agentPid = agent.child.pid!;
  await load(plainUrl, plainPid);
  await load(agentUrl, agentPid);

  const without: Round[] = [];
  const withAgent: Round[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    without.push(await load(plainUrl, plainPid));
    withAgent.push(await load(agentUrl, agentPid));
    console.log(
      `round ${i + 1}: without ${without[i]!.requestsPerSec.toFixed(0)} req/s (${without[i]!.cpuPerRequestUs.toFixed(1)} µs CPU/req), ` +
        `with ${withAgent[i]!.requestsPerSec.toFixed(0)} req/s (${withAgent[i]!.cpuPerRequestUs.toFixed(1)} µs CPU/req)`,
    );
  }
  const median = (rounds: Round[], pick: (r: Round) => number) => {
    const values = rounds.map(pick).sort((a, b) => a - b);
    const mid = Math.floor(values.length / 2);
    return values.length % 2 ? values[mid]! : (values[mid - 1]! + values[mid]!) / 2;
  };
  const rpsWithout = median(without, (r) => r.requestsPerSec);
  const rpsWith = median(withAgent, (r) => r.requestsPerSec);
  const loss = ((rpsWithout - rpsWith) / rpsWithout) * 100;
  const cpuWithout = median(without, (r) => r.cpuPerRequestUs);
  const cpuWith = median(withAgent, (r) => r.cpuPerRequestUs);
  const cpuCost = ((cpuWith - cpuWithout) / cpuWithout) * 100;
  const errors = [...without, ...withAgent].reduce((sum, r) => sum + r.non2xx, 0);
  const lines = [
    '## Agent: whole-request overhead',
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. Reproduce: \`npm run bench:agent-http\` (stack up, \`npm run build\` first).`,
    '',
    `A hello-world \`http.createServer\` app, once plain and once started with \`node --import agent/register.js\`, the agent`,
    'connected to a Steward server and enforcing a qps limit (`/**`, 1,000,000/s) and an error-ratio breaker on every request.',
    `Load: autocannon, ${CONNECTIONS} connections, ${DURATION_SEC} s per round, ${ROUNDS} rounds alternating plain / agent after one warm-up`,
    'round each; medians below. Load tool and app share the 2 cores, as they would share a host.',
    '',
    '| | requests/s (median) | app CPU per request (median) | latency p50 | latency p99 | each round (req/s) |',
    '|---|---|---|---|---|---|',
    `| without agent | ${rpsWithout.toFixed(0)} | ${cpuWithout.toFixed(1)} µs | ${median(without, (r) => r.p50)} ms | ${median(without, (r) => r.p99)} ms | ${without.map((r) => r.requestsPerSec.toFixed(0)).join(', ')} |`,
    `| with agent | ${rpsWith.toFixed(0)} | ${cpuWith.toFixed(1)} µs | ${median(withAgent, (r) => r.p50)} ms | ${median(withAgent, (r) => r.p99)} ms | ${withAgent.map((r) => r.requestsPerSec.toFixed(0)).join(', ')} |`,
    '',
    `Throughput loss with the agent: **${loss.toFixed(1)} %** (goal ≤ 3 %: ${loss <= 3 ? 'met' : 'not met'}); the app's CPU time per request`,
    `${cpuCost >= 0 ? 'rises' : 'falls'} by **${Math.abs(cpuCost).toFixed(1)} %** with the agent. On 2 cores the load tool competes with the app, so`,
    'requests/s alone can hide a cost: CPU per request (from /proc/<pid>/stat, utime + stime) is the finer measure of what the agent adds.',
    `Non-2xx or errors in all rounds: ${errors}.`,
  ];
  console.log(lines.join('\n'));
  await writeSection('agent-http', lines);
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => killAll());
