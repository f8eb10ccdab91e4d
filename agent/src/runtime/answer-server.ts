import http, { type ClientRequest } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Answer } from '../engine/index.js';
import { markInternal } from './inbound.js';
import { writeAnswer } from './interception.js';

/**
 * Answers rejected or degraded outbound `http.request` calls. The client must get the answer with
 * real ClientRequest/IncomingMessage semantics (events, parser, keep-alive, timeouts), so rather
 * than imitating a response the request is handed a real connection to a loopback server that
 * writes the answer. Nothing about the request is rewritten: host, path, headers stay as the
 * application made them; only the socket goes elsewhere.
 *
 * The server knows which answer a request gets by the client's local port: the answer is bound to
 * the connection before the request's first byte is written (on the request's `socket` event,
 * which Node emits before flushing), and Node's client sends one request at a time per connection.
 */

/** The part of http.Agent that ClientRequest calls; not in @types/node. */
export interface RequestAgent {
  addRequest(req: ClientRequest, options: object): void;
}

export class AnswerServer {
  private server: http.Server | undefined;
  private starting: Promise<number> | undefined;
  private port = 0;
  /** Client local port → the answer for the request on that connection; bounded by open connections. */
  private readonly byClientPort = new Map<number, Answer>();
  private readonly watched = new WeakSet<Socket>();
  private readonly agent: http.Agent & RequestAgent;

  constructor(private readonly onError: (error: unknown) => void) {
    type OnCreate = (error: Error | null, socket: Duplex) => void;
    const connectToServer = (callback: OnCreate): Socket | undefined => {
      if (this.port !== 0) return connect(this.port, '127.0.0.1');
      this.start().then(
        (port) => callback(null, connect(port, '127.0.0.1')),
        // http.Agent's own callback takes (error) alone on failure.
        (error: Error) => (callback as (error: Error) => void)(error),
      );
      return undefined;
    };
    // A keep-alive pool: answering thousands of rejected calls a second must not open (and leave in
    // TIME_WAIT) a connection each. Idle pooled sockets are unref'd by http.Agent itself.
    this.agent = new (class extends http.Agent {
      override getName(): string {
        return 'steward-answers';
      }
      override createConnection(_options: unknown, callback?: OnCreate) {
        return connectToServer(callback ?? (() => undefined));
      }
    })({ keepAlive: true }) as unknown as http.Agent & RequestAgent;
  }

  /**
   * Gives `req` (not yet on a socket) a connection to the answer server, which answers it with
   * `answer`; if that fails, `unguarded` sends the request on its way.
   */
  deliver(req: ClientRequest, options: object, answer: Answer, unguarded: () => void): void {
    try {
      req.once('socket', (socket: Socket) => this.bind(socket, answer));
      this.agent.addRequest(req, options);
    } catch (error) {
      this.onError(error);
      unguarded();
    }
  }

  stop(): void {
    this.agent.destroy();
    this.server?.close();
    this.server?.closeAllConnections();
  }

  private bind(socket: Socket, answer: Answer): void {
    const register = () => {
      const port = socket.localPort;
      if (port === undefined) return;
      this.byClientPort.set(port, answer);
      if (!this.watched.has(socket)) {
        this.watched.add(socket);
        socket.once('close', () => this.byClientPort.delete(port));
      }
    };
    // A new connection has no local port until it connects; this listener runs before the one that
    // writes the request, which Node adds when the request is flushed.
    if (socket.localPort === undefined) socket.once('connect', register);
    else register();
  }

  private start(): Promise<number> {
    this.starting ??= new Promise<number>((resolve, reject) => {
      const server = http.createServer((req, res) => {
        const port = req.socket.remotePort ?? 0;
        const answer = this.byClientPort.get(port);
        this.byClientPort.delete(port);
        try {
          if (answer === undefined) throw new Error('no answer is bound to this connection');
          writeAnswer(res, answer);
        } catch (error) {
          this.onError(error);
          res.destroy();
        }
      });
      markInternal(server);
      // The client side holds the process alive while a request is in flight; the server never does.
      server.on('connection', (socket: Socket) => socket.unref());
      server.unref();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        this.port = (server.address() as AddressInfo).port;
        resolve(this.port);
      });
      this.server = server;
    }).catch((error: unknown) => {
      this.onError(error);
      this.starting = undefined;
      throw error;
    });
    return this.starting;
  }
}
