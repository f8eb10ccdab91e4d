import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenOnLoopback } from './net.js';

/**
 * A stand-in in front of the real Eureka server, to make one URL misbehave on demand:
 * - `pass`: forwards every request unchanged;
 * - `html`: answers every request 200 with an HTML page (a login portal or a proxy's error page);
 * - `refuse`: drops the connection without an answer (a peer that is down);
 * - `drop-delta`: forwards, but strips one application from `/apps/delta` answers, so that the
 *   client's copy falls out of sync while the delta's `apps__hashcode` still counts the whole registry.
 */
export type ProxyMode = 'pass' | 'html' | 'refuse' | 'drop-delta';

export class EurekaProxy {
  mode: ProxyMode = 'pass';
  /** The application `drop-delta` strips (upper-case, as Eureka names it). */
  dropApp = '';
  /** Requests received, whatever the mode. */
  requests = 0;
  private readonly upstream: URL;
  private readonly server: Server = createServer((req, res) => void this.handle(req, res));
  private port = 0;

  constructor(upstreamBase: string) {
    this.upstream = new URL(upstreamBase);
  }

  /** The base URL to give a client: the upstream's path on the proxy's port. */
  get url(): string {
    return `http://127.0.0.1:${this.port}${this.upstream.pathname.replace(/\/+$/, '')}`;
  }

  async start(): Promise<this> {
    this.port = await listenOnLoopback(this.server);
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.requests += 1;
    if (this.mode === 'refuse') {
      req.socket.destroy();
      return;
    }
    if (this.mode === 'html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!DOCTYPE html><html><head><title>Sign in</title></head><body><form action="/login"></form></body></html>');
      return;
    }
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const upstream = await fetch(new URL(req.url ?? '/', this.upstream.origin), {
        method: req.method ?? 'GET',
        headers: { Accept: req.headers.accept ?? '*/*', 'Content-Type': req.headers['content-type'] ?? 'application/json' },
        ...(chunks.length > 0 ? { body: Buffer.concat(chunks) } : {}),
      });
      let text = await upstream.text();
      if (this.mode === 'drop-delta' && upstream.ok && req.url?.split('?')[0]?.endsWith('/apps/delta')) {
        const document = JSON.parse(text) as { applications: { application: { name: string }[] } };
        document.applications.application = document.applications.application.filter((app) => app.name !== this.dropApp);
        text = JSON.stringify(document);
      }
      res.writeHead(upstream.status, { 'Content-Type': upstream.headers.get('content-type') ?? 'application/json' });
      res.end(text);
    } catch (error) {
      res.writeHead(502, { 'Content-Type': 'text/plain' });
      res.end(`proxy: ${(error as Error).message}`);
    }
  }
}
