import { createServer } from 'node:http';
import type { PinoLogger } from 'nestjs-pino';
import { Server } from 'socket.io';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AgentDirectory, type AgentEvent } from '../../src/agent-protocol/agent-directory.js';
import { ClusterAgentDirectory } from '../../src/agent-protocol/cluster-agent-directory.js';
import type { AgentHub } from '../../src/agent-protocol/agent-hub.js';
import type { ApiTokens } from '../../src/auth/api-tokens.service.js';
import { DashboardGateway } from '../../src/dashboard/dashboard.gateway.js';
import { LocalRuleChangeFeed } from '../../src/governance/rule-change-feed.js';
import { MetricsService } from '../../src/metrics/metrics.service.js';
import type { RegistryBridge } from '../../src/registry-bridge/registry-bridge.service.js';
import type { StatsService } from '../../src/stats/stats.service.js';
import { Subject } from 'rxjs';
import { listenOnLoopback } from '../support/net.js';
import { until } from './agent-runtime-support.js';
import { helloFrame } from '../support/hello-frame.js';

// The gateway against a real socket.io server: bursts leave as one `agents` array per flush, and a
// dashboard that stops reading is cut off once it holds a bounded amount, while another dashboard
// keeps receiving everything.

const VIEWER = 'viewer-token';
const warnings: string[] = [];
const logger = {
  info: () => undefined,
  warn: (_details: unknown, message: string) => warnings.push(message),
  error: () => undefined,
} as unknown as PinoLogger;

const hello = (instanceId: string) => helloFrame(instanceId);

describe('the dashboard gateway', () => {
  const http = createServer();
  const server = new Server(http, { serveClient: false, transports: ['websocket'] });
  const directory = new AgentDirectory();
  const cluster = new ClusterAgentDirectory(directory, 'r1');
  const metrics = new MetricsService();
  const gateway = new DashboardGateway(
    { socketServer: () => server, directory, cluster } as unknown as AgentHub,
    { catalog: { subscribe: () => () => undefined, lastSeq: () => 0 } } as unknown as RegistryBridge,
    new LocalRuleChangeFeed(),
    { aggregating: false, liveStream: () => new Subject() } as unknown as StatsService,
    {
      verify: (token: string) => Promise.resolve(token === VIEWER ? { name: 'v', role: 'viewer', tokenId: 'v' } : undefined),
    } as unknown as ApiTokens,
    metrics,
    logger,
  );
  let port = 0;
  const sockets: Socket[] = [];

  async function dashboard(): Promise<{ socket: Socket; agents: AgentEvent[][] }> {
    const socket = io(`http://127.0.0.1:${port}/dashboard`, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      auth: { token: VIEWER },
    });
    sockets.push(socket);
    const agents: AgentEvent[][] = [];
    socket.on('agents', (batch: AgentEvent[]) => agents.push(batch));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    });
    return { socket, agents };
  }

  const clients = () => server.of('/dashboard').sockets.size;

  beforeAll(async () => {
    port = await listenOnLoopback(http);
    gateway.onApplicationBootstrap();
  });

  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    gateway.onModuleDestroy();
    server.engine.close();
    await new Promise((resolve) => http.close(resolve));
  });

  it('sends a burst of agent events as one array per flush, in order', async () => {
    // Nobody watching: nothing is kept for later.
    directory.connect(hello('before'), '127.0.0.1');
    const { socket, agents } = await dashboard();
    for (let i = 0; i < 300; i++) directory.connect(hello(`burst-${i}`), '127.0.0.1');
    await until(() => (agents.flat().length === 300 ? true : undefined), 'the burst');
    expect(agents.length).toBeLessThanOrEqual(2);
    expect(agents.flat().map((e) => e.instanceId)).toEqual(Array.from({ length: 300 }, (_, i) => `burst-${i}`));
    socket.disconnect();
    await until(() => (clients() === 0 ? true : undefined), 'the disconnection');
  });

  it('disconnects a dashboard that stops reading, and keeps serving the others in full', async () => {
    const healthy = await dashboard();
    // The stuck one speaks engine.io by hand, so that it can stop reading its TCP socket.
    const stuck = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
    await new Promise<void>((resolve, reject) => {
      stuck.on('message', (data: Buffer) => {
        const text = data.toString();
        if (text.startsWith('0')) stuck.send(`40/dashboard,${JSON.stringify({ token: VIEWER })}`);
        else if (text.startsWith('40/dashboard,')) resolve();
        else if (text.startsWith('44/dashboard,')) reject(new Error(text));
      });
      stuck.once('error', reject);
    });
    expect(clients()).toBe(2);
    stuck.pause();

    // Large events, 4,000 per flush (~1 MB), until the stuck client's queue passes its bound.
    const padding = 'x'.repeat(100);
    let sent = 0;
    const started = Date.now();
    while (clients() === 2 && Date.now() - started < 15_000) {
      for (let i = 0; i < 4_000; i++) directory.connect(hello(`i-${sent++}-${padding}`), '127.0.0.1');
      await new Promise((resolve) => setTimeout(resolve, 260));
    }
    expect(clients()).toBe(1);
    expect(warnings).toContain('dashboard client does not keep up: disconnected');
    // The healthy one missed nothing.
    await until(() => (healthy.agents.flat().length === sent ? true : undefined), 'every event at the healthy dashboard', 10_000);
    expect(healthy.socket.connected).toBe(true);
    stuck.terminate();
  }, 30_000);
});
