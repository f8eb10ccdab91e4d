import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { Counters } from '../../src/stats/rollup.js';
import { ADMIN_TOKEN } from './app.js';
import { AGENT_REGISTER, type Child, eventually, startNode } from './processes.js';

/**
 * Call statistics end to end, with real processes: the example Node apps with the agent preloaded,
 * a Steward server (or several, one after the other) and the REST API the totals are read from.
 * Shared by the `stats-*.test.ts` integration tests.
 */

export const PROVIDER_SCRIPT = fileURLToPath(new URL('../../examples/node/provider.mjs', import.meta.url));
export const CONSUMER_SCRIPT = fileURLToPath(new URL('../../examples/node/consumer.mjs', import.meta.url));

/** The outcome counters of the stats API (the protocol's counters of the same names), as summed over a series. */
export const OUTCOMES = ['calls', 'successes', 'errors', 'limited', 'broken', 'degraded'] as const;
export type CallTotals = Pick<Counters, (typeof OUTCOMES)[number]>;

export const noCalls = (): CallTotals => ({ calls: 0, successes: 0, errors: 0, limited: 0, broken: 0, degraded: 0 });

export type Direction = 'inbound' | 'outbound';

/** The server's REST API with the admin token. */
export class StewardApi {
  constructor(readonly url: string) {}

  async request<T>(path: string, init: { method?: string; json?: unknown } = {}): Promise<T> {
    const res = await fetch(`${this.url}${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) }),
    });
    const body = (await res.json()) as T;
    if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
    return body;
  }

  /** A new agent token. */
  async agentToken(name: string): Promise<string> {
    return (await this.request<{ token: string }>('/api/tokens', { method: 'POST', json: { name, role: 'agent' } })).token;
  }

  /** How many agents of `application` the server holds a session with. */
  async connectedAgents(application: string): Promise<number> {
    return (await this.request<{ summary: { connected: number } }>(`/api/applications/${application}/agents`)).summary.connected;
  }

  /** Resolves once the server holds exactly `count` sessions of `application`. */
  async waitForAgents(application: string, count: number, timeoutMs = 20_000): Promise<void> {
    await eventually(
      async () => ((await this.connectedAgents(application)) === count ? true : undefined),
      timeoutMs,
      `${count} connected agent(s) of ${application}`,
    );
  }

  /** The API's totals for one application and direction, from `from` (epoch ms) to a minute from now. */
  async totals(application: string, direction: Direction, from: number): Promise<CallTotals> {
    const series = await this.request<{ points: CallTotals[] }>(
      `/api/stats/series?application=${application}&direction=${direction}&step=1m&from=${from}&to=${Date.now() + 60_000}`,
    );
    const sum = noCalls();
    for (const point of series.points) for (const key of OUTCOMES) sum[key] += point[key];
    return sum;
  }

  /** Waits until the totals equal `expected` exactly; fails with the last totals seen otherwise. */
  async totalsReach(
    application: string,
    direction: Direction,
    expected: CallTotals,
    { from, timeoutMs = 30_000 }: { from: number; timeoutMs?: number },
  ): Promise<void> {
    let last: CallTotals | undefined;
    try {
      await eventually(
        async () => {
          last = await this.totals(application, direction, from);
          return JSON.stringify(last) === JSON.stringify(expected) ? true : undefined;
        },
        timeoutMs,
        `${application} ${direction} totals`,
      );
    } catch {
      expect(last, `${application} ${direction} totals after ${timeoutMs} ms`).toEqual(expected);
    }
  }
}

export interface AgentApp {
  /** Where the app listens. */
  url: string;
  child: Child;
}

/** Starts one of the example apps with the agent preloaded, reporting to `serverUrl` as `application`. */
export async function startAgentApp(
  script: string,
  application: string,
  agent: { serverUrl: string; token: string },
  env: Record<string, string> = {},
): Promise<AgentApp> {
  const child = startNode(['--import', AGENT_REGISTER, script], {
    APP_NAME: application,
    STEWARD_SERVER_URL: agent.serverUrl,
    STEWARD_APPLICATION: application,
    STEWARD_AGENT_TOKEN: agent.token,
    STEWARD_STATE_DIR: mkdtempSync(join(tmpdir(), 'steward-stats-test-')),
    STEWARD_HOST: '127.0.0.1',
    ...env,
  });
  const line = await child.line<{ listening: number }>((v) => typeof v['listening'] === 'number');
  return { url: `http://127.0.0.1:${line.listening}`, child };
}
