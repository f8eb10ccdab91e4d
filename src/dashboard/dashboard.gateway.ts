import { Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { Counter, Gauge } from 'prom-client';
import type { Subscription } from 'rxjs';
import type { Namespace, Socket } from 'socket.io';
import { AgentHub } from '../agent-protocol/agent-hub.js';
import { roleAllows } from '../auth/api-token.model.js';
import { ApiTokens, type Identity } from '../auth/api-tokens.service.js';
import { RuleChangeFeed } from '../governance/rule-change-feed.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { RegistryBridge } from '../registry-bridge/registry-bridge.service.js';
import { StatsService } from '../stats/stats.service.js';
import { DashboardEventBuffer } from './dashboard-events.js';

export const DASHBOARD_NAMESPACE = '/dashboard';
/** Events reach dashboards at most this often: a burst becomes one emit per kind, not one per event. */
export const FLUSH_MS = 250;
/** A client with this much still queued (its connection busy with earlier frames) skips `stats`: the next second supersedes them. */
const LAGGING_BYTES = 256 * 1024;
/** A client with this much queued is disconnected (it reconnects and reloads): what a stuck client holds stays bounded. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** A connected dashboard's token is checked again this often, so a revoked token stops being served. */
const RECHECK_MS = 60_000;

interface DashboardClient {
  identity: Identity;
  token: string;
  /** Bytes engine.io holds for this connection because its transport is still writing earlier frames. */
  queuedBytes: number;
}

const clientOf = (socket: Socket) => (socket.data as { client: DashboardClient }).client;

const sizeOf = (data: unknown) =>
  typeof data === 'string' ? data.length : data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data.byteLength : 0;

/** A handshake refusal: the client's connect_error has this `message`, and `data: {code, message}` says why. */
function refusal(code: 'unauthorized' | 'unavailable', message: string): Error {
  return Object.assign(new Error(code), { data: { code, message } });
}

/**
 * The dashboard's live updates (docs/dashboard.md): a socket.io namespace on the agent hub's
 * server, for viewer, operator and admin tokens. It listens to the catalog, the agent directory,
 * the rule change feed and the live statistics, collects what they publish in a bounded buffer
 * (nothing while no dashboard is connected), and sends it every FLUSH_MS. The sources' callbacks
 * only queue, so the agents' frame path never waits on a dashboard; a dashboard that cannot keep
 * up loses `stats` first and is disconnected before it holds more than MAX_QUEUED_BYTES.
 */
@Injectable()
export class DashboardGateway implements OnApplicationBootstrap, OnModuleDestroy {
  private nsp?: Namespace;
  private readonly buffer = new DashboardEventBuffer();
  private flushTimer?: NodeJS.Timeout;
  private lastFlushAt = 0;
  private recheckTimer?: NodeJS.Timeout;
  private readonly unsubscribe: (() => void)[] = [];
  private liveStats?: Subscription;
  private readonly dropped: Counter<'event' | 'reason'>;

  constructor(
    private readonly hub: AgentHub,
    private readonly bridge: RegistryBridge,
    private readonly feed: RuleChangeFeed,
    private readonly stats: StatsService,
    private readonly tokens: ApiTokens,
    metrics: MetricsService,
    @InjectPinoLogger(DashboardGateway.name) private readonly logger: PinoLogger,
  ) {
    const clients = () => this.nsp?.sockets.size ?? 0;
    new Gauge({
      name: 'steward_dashboard_clients',
      help: 'Dashboards connected to this replica (socket.io namespace /dashboard).',
      registers: [metrics.registry],
      collect() {
        this.set(clients());
      },
    });
    this.dropped = new Counter({
      name: 'steward_dashboard_events_dropped_total',
      help: 'Live events not sent to dashboards: over the per-flush limit (overflow), skipped for a client that lags (slow-client).',
      labelNames: ['event', 'reason'] as const,
      registers: [metrics.registry],
    });
  }

  onApplicationBootstrap(): void {
    const nsp = this.hub.socketServer().of(DASHBOARD_NAMESPACE);
    this.nsp = nsp;
    nsp.use((socket, next) => {
      this.identify(socket.handshake.auth['token']).then(
        (result) => {
          if (typeof result === 'string') {
            next(refusal('unauthorized', result));
            return;
          }
          (socket.data as { client: DashboardClient }).client = { ...result, queuedBytes: 0 };
          next();
        },
        (error: unknown) => {
          this.logger.warn({ err: error }, 'dashboard authentication failed');
          next(refusal('unavailable', 'authentication is unavailable; retry later'));
        },
      );
    });
    nsp.on('connection', (socket) => this.onConnection(socket));

    this.unsubscribe.push(
      this.bridge.catalog.subscribe((changes) => {
        if (this.watched()) this.queue(() => this.buffer.catalog(changes));
      }),
      this.hub.cluster.subscribe((event) => {
        if (this.watched()) this.queue(() => this.buffer.agent(event));
      }),
      this.feed.subscribe((change) => {
        if (this.watched()) this.queue(() => this.buffer.ruleSet(change, Date.now()));
      }),
    );
    // Every aggregator's seconds, whichever process runs it.
    this.liveStats = this.stats.liveStream().subscribe((second) => {
      if (this.watched()) this.queue(() => this.buffer.second(second));
    });
    this.recheckTimer = setInterval(() => void this.recheck(), RECHECK_MS);
    this.recheckTimer.unref();
  }

  onModuleDestroy(): void {
    for (const off of this.unsubscribe) off();
    this.liveStats?.unsubscribe();
    clearTimeout(this.flushTimer);
    clearInterval(this.recheckTimer);
    this.nsp?.disconnectSockets(true);
  }

  private watched(): boolean {
    return (this.nsp?.sockets.size ?? 0) > 0;
  }

  private async identify(token: unknown): Promise<Omit<DashboardClient, 'queuedBytes'> | string> {
    if (typeof token !== 'string' || token.length === 0 || token.length > 1_024) {
      return 'an API token is required in the handshake: auth.token';
    }
    const identity = await this.tokens.verify(token);
    if (!identity) return 'unknown or revoked API token';
    if (!roleAllows(identity.role, 'viewer')) return `a ${identity.role} token cannot open the dashboard`;
    return { identity, token };
  }

  private onConnection(socket: Socket): void {
    const client = clientOf(socket);
    // engine.io's own events: a packet joins the connection's write buffer; the buffer went to the
    // transport whole. In between, what is counted waits on a slow or dead peer.
    const conn = socket.conn;
    const queued = (packet: { data?: unknown }) => {
      client.queuedBytes += sizeOf(packet.data);
    };
    const flushed = () => {
      client.queuedBytes = 0;
    };
    conn.on('packetCreate', queued);
    conn.on('flush', flushed);
    socket.once('disconnect', () => {
      conn.off('packetCreate', queued);
      conn.off('flush', flushed);
    });
    socket.emit('hello', {
      name: client.identity.name,
      role: client.identity.role,
      catalogSeq: this.bridge.catalog.lastSeq(),
      aggregating: this.stats.aggregating,
    });
  }

  private queue(add: () => void): void {
    add();
    if (this.flushTimer) return;
    // The first event after a quiet period goes out at once; the rest wait for the next slot.
    this.flushTimer = setTimeout(() => this.flush(), Math.max(0, this.lastFlushAt + FLUSH_MS - Date.now()));
    this.flushTimer.unref();
  }

  private flush(): void {
    this.flushTimer = undefined;
    this.lastFlushAt = Date.now();
    const nsp = this.nsp;
    const batch = this.buffer.drain();
    for (const [event, count] of Object.entries(batch.dropped))
      if (count > 0) this.dropped.inc({ event, reason: 'overflow' }, count);
    if (!nsp) return;
    const lagging: string[] = [];
    for (const socket of nsp.sockets.values()) {
      const { queuedBytes, identity } = clientOf(socket);
      if (queuedBytes > MAX_QUEUED_BYTES) {
        this.logger.warn({ client: identity.name, queuedBytes }, 'dashboard client does not keep up: disconnected');
        socket.disconnect(true);
      } else if (queuedBytes > LAGGING_BYTES) {
        lagging.push(socket.id);
      }
    }
    // Broadcasts: each frame is encoded once for every client.
    if (batch.catalog) nsp.emit('catalog', batch.catalog);
    for (const rules of batch.rules) nsp.emit('rules', rules);
    if (batch.agents.length > 0) nsp.emit('agents', batch.agents);
    if (batch.stats.length > 0) {
      const to = lagging.length > 0 ? nsp.except(lagging) : nsp;
      for (const second of batch.stats) to.emit('stats', second);
      if (lagging.length > 0) this.dropped.inc({ event: 'stats', reason: 'slow-client' }, lagging.length * batch.stats.length);
    }
  }

  /** Disconnects dashboards whose token was revoked or lost its role; a database outage keeps them. */
  private async recheck(): Promise<void> {
    const sockets = [...(this.nsp?.sockets.values() ?? [])];
    await Promise.all(
      sockets.map(async (socket) => {
        const client = clientOf(socket);
        const identity = await this.tokens.verify(client.token).catch(() => client.identity);
        if (!identity || !roleAllows(identity.role, 'viewer')) socket.disconnect(true);
      }),
    );
  }
}
