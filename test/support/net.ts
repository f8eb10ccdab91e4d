import type { Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';

/** Listens on a loopback port of the kernel's choice and returns it. */
export async function listenOnLoopback(server: Server | HttpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** A port that was free a moment ago (the kernel's choice). */
export async function freePort(): Promise<number> {
  const server = createServer();
  const port = await listenOnLoopback(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A TCP server that accepts connections and never answers: what a hung dependency looks like.
 * `open()` counts connections still open, so a test can check that a client let go.
 */
export class SilentServer {
  private readonly sockets = new Set<Socket>();
  private total = 0;
  private readonly server: Server = createServer((socket) => {
    this.total += 1;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.resume(); // read and discard, so a client's close is noticed
  });
  port = 0;

  async start(): Promise<this> {
    this.port = await listenOnLoopback(this.server);
    return this;
  }

  accepted(): number {
    return this.total;
  }

  open(): number {
    return this.sockets.size;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
