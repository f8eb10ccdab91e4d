import http from 'node:http';
import https from 'node:https';
import type { Socket as NetSocket } from 'node:net';
import { io, type Socket } from 'socket.io-client';
import {
  PROTOCOL_VERSION,
  ServerMessageSchema,
  type AgentMessage,
  type ServerMessage,
} from '../../../src/agent-protocol/messages.js';
import { version } from '../../package.json';
import type { BreakerState } from '../engine/index.js';
import { errorText, type Faults, type Logger } from './log.js';
import type { Peers } from './names.js';
import type { Outcome, RuleSet } from './rule-set.js';

/**
 * The agent's session with the Steward server (docs/agent-protocol.md): socket.io over websocket to
 * the `/agents` namespace, reconnecting forever. Every server frame is validated before it is acted
 * on; agent frames are sent only while connected (the hello after a reconnection carries the
 * revision held, so nothing needs to be buffered; statistics and call records wait in the
 * Reporter's outboxes until the server acknowledges them). The session never keeps the process alive.
 */

export const CAPABILITIES = ['limit', 'breaker', 'degrade', 'http-inbound', 'http-outbound', 'fetch-outbound'];
/** The ports of hello and listening frames are capped by the protocol. */
export const MAX_PORTS = 16;
const NACK_REASON_CHARS = 2_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 15_000;

export interface SessionOptions {
  serverUrl: string;
  token: string | undefined;
  application: string;
  instanceId: string;
  /** This agent process's id (`hello.run`): the reporter's frames are numbered per run. */
  run: string;
  host: string;
  rules: RuleSet;
  peers: Peers;
  ports: () => readonly number[];
  log: Logger;
  faults: Faults;
  /** The server welcomed this connection's hello: frames that waited can be sent now. */
  onEstablished?: () => void;
  /** The server acknowledged (or refused) a statistics or records frame. */
  onStatsAck?: (ack: Extract<ServerMessage, { type: 'stats-ack' }>) => void;
}

type Frame<T extends AgentMessage['type']> = Omit<Extract<AgentMessage, { type: T }>, 'type'>;

export class Session {
  /**
   * The HTTP agent of the session's websocket: its sockets are unref'd from the start (a connection
   * attempt must not keep a finished script alive), and outbound interception recognises it.
   */
  readonly transportAgent: http.Agent;
  invalidFrames = 0;
  reconnects = 0;
  private socket: Socket | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private connects = 0;
  /** The server answered this connection's hello: statistics frames may be sent. */
  private welcomed = false;
  /** Consecutive failures to establish a session, for the retry delay and to log only the first. */
  private failures = 0;

  constructor(private readonly options: SessionOptions) {
    const secure = new URL(options.serverUrl).protocol === 'https:';
    const agent = secure ? new https.Agent() : new http.Agent();
    const create = agent.createConnection.bind(agent);
    agent.createConnection = (connectOptions, callback) => {
      const socket = create(connectOptions, callback);
      (socket as NetSocket | null | undefined)?.unref();
      return socket;
    };
    this.transportAgent = agent;
  }

  get connected(): boolean {
    return this.socket?.connected ?? false;
  }

  /** Connected, and the server answered this connection's hello. */
  get established(): boolean {
    return this.welcomed && this.connected;
  }

  start(): void {
    const { serverUrl, token } = this.options;
    const socket = io(`${new URL(serverUrl).origin}/agents`, {
      transports: ['websocket'],
      auth: token === undefined ? {} : { token },
      forceNew: true,
      reconnection: true,
      reconnectionAttempts: Infinity,
      reconnectionDelay: RETRY_MIN_MS,
      reconnectionDelayMax: RETRY_MAX_MS,
      randomizationFactor: 0.5,
      timeout: 5_000,
      autoUnref: true,
      // socket.io-client types `agent` as string | boolean; the websocket transport hands it to `ws`.
      agent: this.transportAgent as unknown as string,
    });
    socket.on('connect', () => this.guard('connect', () => this.onConnect()));
    socket.on('disconnect', (reason) => this.guard('disconnect', () => this.onDisconnect(reason)));
    socket.on('connect_error', (error) => this.guard('connect_error', () => this.onConnectError(error)));
    socket.onAny((event: string, frame: unknown) => this.guard('frame', () => this.receive(event, frame)));
    this.socket = socket;
  }

  stop(): void {
    clearInterval(this.heartbeat);
    clearTimeout(this.retry);
    this.socket?.disconnect();
    this.transportAgent.destroy();
  }

  listening(ports: readonly number[]): void {
    this.send('listening', { ports: ports.slice(0, MAX_PORTS) });
  }

  breakerState(ruleId: string, state: BreakerState, at: number): void {
    this.send('breaker-state', { ruleId, state, at }, true);
  }

  /** Sends a statistics or records frame if the session is established; false if it is not (the caller keeps it). */
  sendReport(frame: Extract<AgentMessage, { type: 'stats' | 'records' }>): boolean {
    const socket = this.socket;
    if (!this.welcomed || !socket?.connected) return false;
    socket.emit(frame.type, frame);
    return true;
  }

  private onConnect(): void {
    this.welcomed = false;
    if (this.connects++ > 0) this.reconnects++;
    const { application, instanceId, run, host, rules, ports, log } = this.options;
    log.info('connected to the server', { heldRevision: rules.revision });
    this.send('hello', {
      protocol: PROTOCOL_VERSION,
      application,
      instanceId,
      run,
      host,
      ports: ports().slice(0, MAX_PORTS),
      agent: { language: 'node', version },
      capabilities: CAPABILITIES,
      heldRevision: rules.revision,
    });
  }

  private onDisconnect(reason: string): void {
    this.welcomed = false;
    clearInterval(this.heartbeat);
    if (reason === 'io client disconnect') return;
    this.options.log.warn('disconnected from the server; enforcing the rules held meanwhile', {
      reason,
      revision: this.options.rules.revision,
    });
    // socket.io reconnects by itself except when the server ended the session.
    if (reason === 'io server disconnect') this.retryLater();
  }

  private onConnectError(error: Error): void {
    const fields = { error: errorText(error), revision: this.options.rules.revision };
    if (this.failures === 0) this.options.log.warn('cannot reach the server; enforcing the rules held meanwhile', fields);
    else this.options.log.debug('cannot reach the server', fields);
    // A refusal by a server middleware is not retried by socket.io itself.
    if (this.socket?.active) this.failures++;
    else this.retryLater();
  }

  /** Exponential backoff with jitter, as socket.io's own reconnection. */
  private retryLater(): void {
    const base = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.failures++, 16));
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.socket?.connect(), base * (0.5 + Math.random()));
    this.retry.unref();
  }

  private receive(event: string, frame: unknown): void {
    const parsed = ServerMessageSchema.safeParse(frame);
    if (!parsed.success || parsed.data.type !== event) {
      this.invalidFrames++;
      const issue = parsed.success ? `type "${parsed.data.type}" sent as "${event}"` : parsed.error.issues[0]?.message;
      this.options.log.debug('invalid frame ignored', { event, issue });
      return;
    }
    this.handle(parsed.data);
  }

  private handle(message: ServerMessage): void {
    const { application, rules, peers, log } = this.options;
    switch (message.type) {
      case 'welcome':
        this.failures = 0;
        if (message.protocol !== PROTOCOL_VERSION)
          log.warn('the server speaks another protocol version', { server: message.protocol });
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(
          () => this.send('heartbeat', { appliedRevision: rules.revision, sentAt: Date.now() }, true),
          message.heartbeatMs,
        );
        this.heartbeat.unref();
        this.welcomed = true;
        this.options.onEstablished?.();
        return;
      case 'snapshot':
        return this.reply(
          message.revision,
          message.application === application
            ? rules.replace(message.revision, message.rules)
            : misaddressed(message, application),
        );
      case 'delta':
        if (message.application === application && message.fromRevision !== rules.revision) {
          this.send('resync', { heldRevision: rules.revision });
          return;
        }
        return this.reply(
          message.revision,
          message.application === application
            ? rules.patch(message.revision, message.upserts, message.deletes)
            : misaddressed(message, application),
        );
      case 'peers': {
        if (message.application !== application) {
          this.invalidFrames++;
          return;
        }
        const dropped = peers.replace(message.addresses);
        if (dropped > 0) log.warn('too many peer addresses; the rest are ignored', { dropped });
        return;
      }
      case 'error':
        log.warn('the server reported an error', { code: message.code, message: message.message });
        return;
      case 'stats-ack':
        this.options.onStatsAck?.(message);
        return;
    }
  }

  private reply(revision: number, outcome: Outcome): void {
    const { rules, log } = this.options;
    if (outcome.ok) {
      log.info('rules applied', { revision });
      this.send('ack', { revision });
      return;
    }
    log.warn('rules refused; keeping the rules held', { revision, reason: outcome.reason, keptRevision: rules.revision });
    this.send('nack', { revision, reason: outcome.reason.slice(0, NACK_REASON_CHARS), keptRevision: rules.revision });
  }

  /** Sends while connected, else drops; volatile frames are also dropped when the transport is not writable. */
  private send<T extends AgentMessage['type']>(type: T, frame: Frame<T>, volatile = false): void {
    const socket = this.socket;
    if (!socket?.connected) return;
    (volatile ? socket.volatile : socket).emit(type, { type, ...frame });
  }

  /** Socket event handlers run in socket.io's call stack: an error there must be contained. */
  private guard(kind: string, run: () => void): void {
    try {
      run();
    } catch (error) {
      this.options.faults.record(`session-${kind}`, error);
    }
  }
}

function misaddressed(message: { type: string; application: string }, application: string): Outcome {
  return { ok: false, reason: `${message.type} for application "${message.application}"; this agent is "${application}"` };
}
