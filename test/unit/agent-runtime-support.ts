import { spawn } from 'node:child_process';
import { createServer, type Server as HttpServer } from 'node:http';
import { Server, type Socket } from 'socket.io';
import { AgentMessageSchema } from '../../src/agent-protocol/messages.js';
import { listenOnLoopback } from '../support/net.js';

/** Helpers of the agent runtime tests: rules, a stand-in Steward server, and agent-preloaded children. */

export const ROOT = new URL('../../', import.meta.url).pathname;
export const REGISTER = `${ROOT}agent/register.js`;

type Target =
  { direction: 'inbound'; caller?: string; resource: object } | { direction: 'outbound'; callee: string; resource: object };

export const inbound = (resource: object, caller?: string): Target => ({
  direction: 'inbound',
  ...(caller ? { caller } : {}),
  resource,
});
export const outbound = (callee: string, resource: object): Target => ({ direction: 'outbound', callee, resource });
export const path = (pattern: string) => ({ type: 'http', path: pattern });
export const APP = { type: 'application' };

export const forced = (id: string, target: Target, http: object = { status: 418, body: 'fallback' }) => ({
  id,
  kind: 'degrade',
  application: 'orders',
  force: true,
  target,
  fallback: { http },
});
export const qps = (id: string, target: Target, permitsPerSec: number, queueMs?: number) => ({
  id,
  kind: 'limit',
  application: 'orders',
  target,
  limit: { mode: 'qps', permitsPerSec, ...(queueMs ? { queue: { maxWaitMs: queueMs } } : { burst: 1 }) },
});
export const concurrency = (id: string, target: Target, maxConcurrent: number) => ({
  id,
  kind: 'limit',
  application: 'orders',
  target,
  limit: { mode: 'concurrency', maxConcurrent },
});
export const errorCount = (id: string, target: Target, threshold: number) => ({
  id,
  kind: 'breaker',
  application: 'orders',
  target,
  breaker: { strategy: 'errorCount', threshold, minCalls: threshold, windowMs: 60_000, openMs: 60_000 },
});

export async function until<T>(probe: () => T | undefined, what: string, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export interface Received {
  socket: Socket;
  type: string;
  frame: Record<string, unknown>;
  valid: boolean;
}

/**
 * Plays the server side of the agent protocol: records every frame agents send (and whether it
 * validates), answers hello with welcome and stats or records frames with `stats-ack`, and lets a
 * test push frames.
 */
export class FakeSteward {
  readonly received: Received[] = [];
  readonly tokens: unknown[] = [];
  heartbeatMs = 60_000;
  /** The `accepted` of the stats-ack answering a stats or records frame; undefined: no answer. */
  statsAck: (frame: Record<string, unknown>) => boolean | undefined = () => true;
  port = 0;
  private readonly http: HttpServer = createServer();
  private readonly io = new Server(this.http, { transports: ['websocket'] });

  async start(): Promise<this> {
    this.io.of('/agents').on('connection', (socket) => {
      this.tokens.push((socket.handshake.auth as { token?: unknown }).token);
      socket.onAny((type: string, frame: Record<string, unknown>) => {
        this.received.push({ socket, type, frame, valid: AgentMessageSchema.safeParse(frame).success && frame.type === type });
        if (type === 'hello')
          socket.emit('welcome', { type: 'welcome', protocol: 1, heartbeatMs: this.heartbeatMs, serverTime: Date.now() });
        const accepted = type === 'stats' || type === 'records' ? this.statsAck(frame) : undefined;
        if (accepted !== undefined) socket.emit('stats-ack', { type: 'stats-ack', kind: type, seq: frame.seq, accepted });
      });
    });
    this.port = await listenOnLoopback(this.http);
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  frames(type: string): Received[] {
    return this.received.filter((r) => r.type === type);
  }

  /** The first frame of `type` after the first `skip` ones that satisfies `match`. */
  async next(type: string, skip = 0, match: (frame: Record<string, unknown>) => boolean = () => true): Promise<Received> {
    return until(
      () =>
        this.frames(type)
          .slice(skip)
          .find((r) => match(r.frame)),
      `a ${type} frame`,
    );
  }

  /** Sends a frame to every connected agent, under its type as event name (unless told otherwise). */
  push(frame: { type: string } & Record<string, unknown>, event = frame.type): void {
    this.io.of('/agents').emit(event, frame);
  }

  async stop(): Promise<void> {
    this.io.of('/agents').disconnectSockets(true);
    await this.io.close();
  }
}

export interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs node with the agent preloaded (`--require` unless other node options are given). */
export function runNode(
  args: string[],
  env: Record<string, string | undefined>,
  onLine?: (line: string) => void,
  preload = ['--require', REGISTER],
): Promise<ChildResult> & { kill(): void } {
  const started = Date.now();
  const child = spawn(process.execPath, [...preload, ...args], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    partial += chunk.toString();
    for (let end = partial.indexOf('\n'); end >= 0; end = partial.indexOf('\n')) {
      onLine?.(partial.slice(0, end));
      partial = partial.slice(end + 1);
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const result = new Promise<ChildResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
  });
  // A test that fails before its app exits must not leave the app (and its agent) running.
  return Object.assign(result, {
    kill: () => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')),
  });
}
