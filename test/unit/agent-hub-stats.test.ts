import { createServer } from 'node:http';
import type { ConfigService } from '@nestjs/config';
import type { HttpAdapterHost } from '@nestjs/core';
import type { PinoLogger } from 'nestjs-pino';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AgentHub } from '../../src/agent-protocol/agent-hub.js';
import type { ApiTokens } from '../../src/auth/api-tokens.service.js';
import type { AppConfig } from '../../src/config/app-config.js';
import type { RuleChangeFeed } from '../../src/governance/rule-change-feed.js';
import type { RuleStore } from '../../src/governance/rule-store.service.js';
import { MetricsService } from '../../src/metrics/metrics.service.js';
import type { RegistryBridge } from '../../src/registry-bridge/registry-bridge.service.js';
import { type Produced, StatsIngest } from '../../src/stats/stats-ingest.js';
import { StatsMessageSchema, type StatsMessageValue } from '../../src/stats/stats-message.js';
import { listenOnLoopback } from '../support/net.js';
import { until } from './agent-runtime-support.js';

// The server's half of at-least-once statistics: the hub answers each stats or records frame with a
// stats-ack once the ingest has produced it (or at once when the ingest refuses it), and the ingest
// calls back only after Kafka took the batch holding the frame. Kafka is a stand-in here.

const kafka = vi.hoisted(() => ({
  sends: [] as { messages: { key: string; value: string }[]; resolve: () => void; reject: (error: Error) => void }[],
}));

vi.mock('kafkajs', () => ({
  logLevel: { NOTHING: 0 },
  CompressionTypes: { GZIP: 1 },
  Kafka: class {
    producer() {
      return {
        connect: () => Promise.resolve(),
        disconnect: () => Promise.resolve(),
        send: (request: { messages: { key: string; value: string }[] }) =>
          new Promise<void>((resolve, reject) => kafka.sends.push({ messages: request.messages, resolve, reject })),
      };
    }
  },
}));
vi.mock('../../src/stats/stats-aggregator.js', () => ({ ensureStatsTopic: () => Promise.resolve() }));

const logger = { info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as PinoLogger;

const config = (values: Partial<AppConfig>) =>
  ({ get: (key: keyof AppConfig) => values[key] }) as unknown as ConfigService<AppConfig, true>;

const hello = (run: string) => ({
  type: 'hello',
  protocol: 1,
  application: 'orders',
  instanceId: 'orders-1',
  run,
  host: '127.0.0.1',
  ports: [],
  agent: { language: 'node', version: '0' },
  capabilities: [],
  heldRevision: 0,
});
type Frame = StatsMessageValue['frame'];
const statsFrame = (seq: number): Frame => ({ type: 'stats', seq, second: 1_790_000_000, dropped: 0, entries: [] });
const recordsFrame = (seq: number): Frame => ({ type: 'records', seq, dropped: 0, records: [] });

describe('the agent hub and statistics frames', () => {
  const http = createServer();
  const accepted: { args: unknown[]; produced: Produced }[] = [];
  let refuse = false;
  const ingest = {
    accept: (application: string, instanceId: string, run: string, frame: Frame, produced: Produced) => {
      if (refuse) return false;
      accepted.push({ args: [application, instanceId, run, frame], produced });
      return true;
    },
  } as unknown as StatsIngest;
  const hub = new AgentHub(
    config({ agents: { heartbeatMs: 60_000, revisionPollMs: 60_000, maxFrameBytes: 1_048_576, topic: 'unused' } }),
    { httpAdapter: { getHttpServer: () => http } } as unknown as HttpAdapterHost,
    {
      storedSet: () => Promise.resolve({ revision: 0, rules: [] }),
      currentRevisions: () => Promise.resolve(new Map()),
    } as unknown as RuleStore,
    { subscribe: () => () => undefined } as unknown as RuleChangeFeed,
    { catalog: { subscribe: () => () => undefined, instances: () => ({ items: [] }) } } as unknown as RegistryBridge,
    { verify: () => Promise.resolve({ name: 'agent', role: 'agent', tokenId: 't' }) } as unknown as ApiTokens,
    ingest,
    new MetricsService(),
    logger,
  );
  let url = '';
  const sockets: Socket[] = [];

  /** A connected client that said hello; what the server sends it is recorded by event. */
  async function agent(run: string) {
    const socket = io(`${url}/agents`, { transports: ['websocket'], auth: { token: 'stw_x' }, reconnection: false });
    sockets.push(socket);
    const frames: Record<string, unknown>[] = [];
    socket.onAny((event: string, frame: Record<string, unknown>) => frames.push({ event, ...frame }));
    socket.emit('hello', hello(run));
    await until(() => frames.find((f) => f.event === 'welcome'), 'the welcome');
    return { socket, frames, acks: () => frames.filter((f) => f.event === 'stats-ack') };
  }

  beforeAll(async () => {
    url = `http://127.0.0.1:${await listenOnLoopback(http)}`;
    hub.onApplicationBootstrap();
  });

  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    hub.onModuleDestroy();
    await new Promise((resolve) => http.close(resolve));
  });

  it('hands each frame to the ingest with the run of the hello, and acknowledges it once produced', async () => {
    const { socket, acks } = await agent('run-aaaaaaaa');
    socket.emit('stats', statsFrame(1));
    socket.emit('records', recordsFrame(1));
    socket.emit('stats', statsFrame(2));
    await until(() => (accepted.length === 3 ? true : undefined), 'three frames');
    expect(accepted.map((a) => a.args)).toEqual([
      ['orders', 'orders-1', 'run-aaaaaaaa', statsFrame(1)],
      ['orders', 'orders-1', 'run-aaaaaaaa', recordsFrame(1)],
      ['orders', 'orders-1', 'run-aaaaaaaa', statsFrame(2)],
    ]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(acks()).toEqual([]); // not in Kafka yet
    accepted[1]!.produced();
    accepted[0]!.produced();
    await until(() => (acks().length === 2 ? true : undefined), 'two acks');
    expect(acks()).toEqual([
      { event: 'stats-ack', type: 'stats-ack', kind: 'records', seq: 1, accepted: true },
      { event: 'stats-ack', type: 'stats-ack', kind: 'stats', seq: 1, accepted: true },
    ]);
    // Its session gone when the produce completes: nothing to acknowledge to.
    socket.disconnect();
    await until(() => (hub.directory.counts().connected === 0 ? true : undefined), 'the disconnection');
    const send = vi.spyOn(hub as unknown as { send: () => void }, 'send');
    accepted[2]!.produced();
    expect(send).not.toHaveBeenCalled();
    send.mockRestore();
  });

  it('refuses at once what the ingest cannot take', async () => {
    const { socket, acks } = await agent('run-bbbbbbbb');
    refuse = true;
    socket.emit('records', recordsFrame(5));
    await until(() => acks()[0], 'the refusal');
    refuse = false;
    expect(acks()).toEqual([{ event: 'stats-ack', type: 'stats-ack', kind: 'records', seq: 5, accepted: false }]);
  });

  it('refuses a hello without a run', async () => {
    const socket = io(`${url}/agents`, { transports: ['websocket'], auth: { token: 'stw_x' }, reconnection: false });
    sockets.push(socket);
    const errors: { code: string; message: string }[] = [];
    socket.on('error', (frame: { code: string; message: string }) => errors.push(frame));
    socket.emit('hello', { ...hello('x'), run: undefined });
    socket.emit('stats', statsFrame(1));
    await until(() => (errors.length === 2 ? true : undefined), 'two errors');
    expect(errors.map((e) => e.message)).toEqual([
      expect.stringMatching(/^invalid hello frame: run: /) as string,
      'the first frame must be hello',
    ]);
  });
});

describe('the stats ingest', () => {
  const ingest = new StatsIngest(
    config({ kafka: { clientId: 'test', brokers: ['127.0.0.1:1'] }, stats: { topic: 'stats' } } as unknown as Partial<AppConfig>),
    new MetricsService(),
    logger,
  );

  it('calls a frame back once the batch holding it is produced, never before, and not after a failed produce', async () => {
    const produced: number[] = [];
    const accept = (seq: number, callback: Produced = () => produced.push(seq)) =>
      ingest.accept('orders', 'orders-1', 'run-cccccccc', statsFrame(seq), callback);
    expect(accept(1)).toBe(true);
    expect(accept(2)).toBe(true);
    expect(
      accept(3, () => {
        throw new Error('a broken callback');
      }),
    ).toBe(true);
    expect(accept(4)).toBe(true);
    const first = await until(() => kafka.sends[0], 'the first produce');
    expect(first.messages.map((m) => StatsMessageSchema.parse(JSON.parse(m.value)))).toEqual([
      {
        v: 1,
        application: 'orders',
        instanceId: 'orders-1',
        run: 'run-cccccccc',
        receivedAt: expect.any(Number) as number,
        frame: statsFrame(1),
      },
    ]);
    expect(first.messages[0]!.key).toBe('orders');
    expect(produced).toEqual([]);
    first.resolve();
    const second = await until(() => kafka.sends[1], 'the second produce');
    expect(produced).toEqual([1]);
    expect(second.messages).toHaveLength(3);
    second.reject(new Error('broker away'));
    const retry = await until(() => kafka.sends[2], 'the retry');
    expect(produced).toEqual([1]);
    retry.resolve();
    await until(() => (produced.length === 3 ? true : undefined), 'the callbacks');
    expect(produced).toEqual([1, 2, 4]);
    // The callback that threw did not make the batch go again.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(kafka.sends).toHaveLength(3);
  });

  it('refuses frames while its queue is full and once shutting down, and never calls them back', async () => {
    const calledBack: number[] = [];
    const accept = (seq: number) =>
      ingest.accept('orders', 'orders-1', 'run-cccccccc', statsFrame(seq), () => calledBack.push(seq));
    let seq = 1;
    while (accept(seq)) seq++;
    expect(seq).toBe(50_001); // the first 50,000 queued (the first alone in a produce that has not completed)
    (await until(() => kafka.sends[3], 'the produce')).resolve();
    const next = await until(() => kafka.sends[4], 'the next batch');
    expect(accept(50_002)).toBe(true); // room again
    const stopping = ingest.onApplicationShutdown();
    expect(accept(50_003)).toBe(false);
    next.reject(new Error('broker away'));
    await stopping;
    expect(calledBack).toEqual([1]);
  });
});
