import { connect, createServer, type Server, type Socket } from 'node:net';
import { listenOnLoopback } from './net.js';

/**
 * A round-robin TCP load balancer on loopback in front of several server ports, as a Kubernetes
 * Service or an L4 balancer would be: each new connection goes to the next upstream; one that
 * refuses the connection is skipped (the next one is tried), so a killed replica's clients land on
 * the others when they reconnect. No stickiness: agents use the websocket transport only.
 */
export class TcpBalancer {
  private readonly server: Server = createServer((client) => this.accept(client, 0));
  private next = 0;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly upstreamPorts: readonly number[]) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.port = await listenOnLoopback(this.server);
    return this;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: Socket, tried: number): void {
    if (tried === 0) {
      this.sockets.add(client);
      client.on('close', () => this.sockets.delete(client));
    }
    client.on('error', () => undefined);
    if (tried >= this.upstreamPorts.length) {
      client.resetAndDestroy();
      return;
    }
    const port = this.upstreamPorts[this.next++ % this.upstreamPorts.length]!;
    client.pause();
    const upstream = connect(port, '127.0.0.1');
    upstream.once('error', () => {
      if (upstream.connecting || upstream.bytesWritten === 0) this.accept(client, tried + 1);
      else client.destroy();
    });
    upstream.once('connect', () => {
      upstream.on('error', () => client.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  }
}
