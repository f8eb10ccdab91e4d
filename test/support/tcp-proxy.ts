import { connect, createServer, type Server, type Socket } from 'node:net';
import { listenOnLoopback } from './net.js';

/**
 * A TCP forwarder in front of a loopback port, to take a client's connection away on demand:
 * - `cut()`: resets every connection and refuses (resets) new ones, as a peer that went away;
 * - `stall()`: stops moving bytes in both directions, connections stay open and new ones hang,
 *   as a network partition neither side notices at once (bytes wait, as in the kernels' buffers);
 * - `heal()`: forwards again (a stalled connection delivers what waited, in order).
 */
export class TcpProxy {
  private mode: 'pass' | 'cut' | 'stall' = 'pass';
  private readonly pairs = new Set<{ client: Socket; upstream: Socket }>();
  private readonly server: Server = createServer((client) => this.accept(client));
  /** Connections accepted, whatever the mode. */
  accepted = 0;
  port = 0;

  constructor(
    private readonly upstreamPort: number,
    private readonly upstreamHost = '127.0.0.1',
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.port = await listenOnLoopback(this.server);
    return this;
  }

  /** Connections currently forwarded (or held). */
  open(): number {
    return this.pairs.size;
  }

  cut(): void {
    this.mode = 'cut';
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.pairs.clear();
  }

  stall(): void {
    this.mode = 'stall';
    for (const { client, upstream } of this.pairs) {
      client.pause();
      upstream.pause();
    }
  }

  heal(): void {
    this.mode = 'pass';
    for (const { client, upstream } of this.pairs) {
      client.resume();
      upstream.resume();
    }
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: Socket): void {
    this.accepted += 1;
    client.on('error', () => undefined);
    if (this.mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(this.upstreamPort, this.upstreamHost);
    upstream.on('error', () => undefined);
    const pair = { client, upstream };
    this.pairs.add(pair);
    // By hand, not pipe(): a pipe resumes its source on 'drain', which would end a stall.
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    const close = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close);
    upstream.on('close', close);
    if (this.mode === 'stall') {
      client.pause();
      upstream.pause();
    }
  }
}
