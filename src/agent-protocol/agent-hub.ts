import { Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { HttpAdapterHost } from '@nestjs/core';
import type { Server as HttpServer } from 'node:http';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { Counter, Gauge } from 'prom-client';
import { type Namespace, Server, type Socket } from 'socket.io';
import { ApiTokens, type Identity } from '../auth/api-tokens.service.js';
import { REPLICA_ID } from '../common/kafka-broadcast.js';
import type { AppConfig } from '../config/app-config.js';
import { RuleChangeFeed } from '../governance/rule-change-feed.js';
import { RuleStore } from '../governance/rule-store.service.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { RegistryBridge } from '../registry-bridge/registry-bridge.service.js';
import { StatsIngest } from '../stats/stats-ingest.js';
import { AgentDirectory } from './agent-directory.js';
import { ClusterAgentDirectory } from './cluster-agent-directory.js';
import { type AgentMessage, AgentMessageSchema, PROTOCOL_VERSION, type ServerMessage } from './messages.js';
import { PeerIndex } from './peer-index.js';
import { type PeersFrame, PushedRuleSet } from './rule-push.js';

export const AGENTS_NAMESPACE = '/agents';
/** An agent must introduce itself this soon after connecting. */
const HELLO_TIMEOUT_MS = 10_000;
/** Bad frames tolerated per session before it is closed (a confused agent, not an attacker, gets told why). */
const MAX_BAD_FRAMES = 20;
/** Coalesces address-map updates (many agents connecting at once). */
const PEERS_DEBOUNCE_MS = 200;
const MAX_PEER_ADDRESSES = 100_000;

interface Session {
  identity: Identity;
  instanceId?: string;
  application?: string;
  /** The agent process (`hello.run`), which numbers its stats and records frames. */
  run?: string;
  lastSeen: number;
  badFrames: number;
}

type ErrorCode = Extract<ServerMessage, { type: 'error' }>['code'];

const room = (application: string) => `app:${application}`;

/**
 * The server side of the agent protocol (docs/agent-protocol.md) on socket.io: authenticates
 * agents, validates every frame, pushes each application's rule set (a snapshot at hello when the
 * agent holds another revision, then deltas, each built once per application and revision and
 * broadcast to the application's room), and records what every agent enforces.
 */
@Injectable()
export class AgentHub implements OnApplicationBootstrap, OnModuleDestroy {
  readonly directory = new AgentDirectory();
  /** Every replica's agents (fed by AgentDirectoryExchange): what the API and the dashboard show. */
  readonly cluster = new ClusterAgentDirectory(this.directory, REPLICA_ID);
  /** Who listens where (catalog and agents): names the address peers of stats frames. */
  readonly peerIndex = new PeerIndex();
  private io?: Server;
  private nsp?: Namespace;
  private readonly settings: AppConfig['agents'];
  /** Rule sets as last pushed, for applications with connected agents. */
  private readonly pushed = new Map<string, PushedRuleSet>();
  /** Per application, work runs in order: a hello's snapshot and a change's delta never cross. */
  private readonly queues = new Map<string, Promise<void>>();
  private readonly sessions = new Map<string, Socket>();
  private readonly lastPeers = new Map<string, string>();
  private readonly peersDirty = new Set<string>();
  private peersTimer?: NodeJS.Timeout;
  private readonly timers: NodeJS.Timeout[] = [];
  private polling = false;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly refused: Counter<'reason'>;
  private readonly pushes: Counter<'kind'>;
  private readonly answers: Counter<'type'>;

  constructor(
    config: ConfigService<AppConfig, true>,
    private readonly adapterHost: HttpAdapterHost,
    private readonly store: RuleStore,
    private readonly feed: RuleChangeFeed,
    private readonly bridge: RegistryBridge,
    private readonly tokens: ApiTokens,
    private readonly stats: StatsIngest,
    metrics: MetricsService,
    @InjectPinoLogger(AgentHub.name) private readonly logger: PinoLogger,
  ) {
    this.settings = config.get('agents', { infer: true });
    const directory = this.directory;
    new Gauge({
      name: 'steward_agents',
      help: 'Agent sessions known to this replica, by whether they are connected.',
      labelNames: ['connected'] as const,
      registers: [metrics.registry],
      collect() {
        const counts = directory.counts();
        this.set({ connected: 'true' }, counts.connected);
        this.set({ connected: 'false' }, counts.disconnected);
      },
    });
    this.refused = new Counter({
      name: 'steward_agent_frames_refused_total',
      help: 'Agent connections and frames refused, by reason.',
      labelNames: ['reason'] as const,
      registers: [metrics.registry],
    });
    this.pushes = new Counter({
      name: 'steward_rule_pushes_total',
      help: 'Rule frames sent to agents: snapshots per agent, deltas per application (one broadcast each).',
      labelNames: ['kind'] as const,
      registers: [metrics.registry],
    });
    this.answers = new Counter({
      name: 'steward_agent_rule_answers_total',
      help: 'ACKs and NACKs received from agents.',
      labelNames: ['type'] as const,
      registers: [metrics.registry],
    });
  }

  /**
   * The socket.io server on the HTTP server, created on first use: one per HTTP server, so the
   * dashboard's namespace (src/dashboard) lives on it too.
   */
  socketServer(): Server {
    this.io ??= new Server(this.adapterHost.httpAdapter.getHttpServer() as HttpServer, {
      serveClient: false,
      transports: ['websocket'],
      // Agent frames are small; anything larger is refused by closing the connection.
      maxHttpBufferSize: this.settings.maxFrameBytes,
      connectTimeout: HELLO_TIMEOUT_MS,
    });
    return this.io;
  }

  onApplicationBootstrap(): void {
    const io = this.socketServer();
    io.of('/').use((_socket, next) => next(refusal('unauthorized', `agents connect to the ${AGENTS_NAMESPACE} namespace`)));
    const nsp = io.of(AGENTS_NAMESPACE);
    this.nsp = nsp;
    nsp.use((socket, next) => {
      this.authenticate(socket.handshake.auth).then(
        (result) => {
          if (typeof result === 'string') {
            this.refused.inc({ reason: 'unauthorized' });
            next(refusal('unauthorized', result));
            return;
          }
          (socket.data as { identity?: Identity }).identity = result;
          next();
        },
        (error: unknown) => {
          this.logger.warn({ err: error }, 'agent authentication failed');
          next(refusal('internal', 'authentication is unavailable; retry later'));
        },
      );
    });
    nsp.on('connection', (socket) => this.onConnection(socket));

    this.unsubscribe.push(this.feed.subscribe(({ application, revision }) => this.onRuleSetChanged(application, revision)));
    this.unsubscribe.push(
      this.bridge.catalog.subscribe((changes) => {
        this.peerIndex.catalogChanged(changes);
        for (const change of changes) this.calleeChanged(change.instance.application);
      }),
    );
    this.peerIndex.loadCatalog(this.bridge.catalog.instances({}, { limit: Number.MAX_SAFE_INTEGER }).items);
    // Agents connected to other replicas name address peers too.
    this.unsubscribe.push(
      this.cluster.watchRemoteAddresses((instanceId, application, record) => {
        if (record) this.peerIndex.agentListening(record);
        else this.peerIndex.agentGone(instanceId);
        this.calleeChanged(application);
      }),
    );
    const every = (ms: number, work: () => void) => {
      const timer = setInterval(work, ms);
      timer.unref();
      this.timers.push(timer);
    };
    every(this.settings.heartbeatMs, () => this.sweep());
    every(this.settings.revisionPollMs, () => void this.pollRevisions());
  }

  onModuleDestroy(): void {
    for (const timer of this.timers) clearInterval(timer);
    if (this.peersTimer) clearTimeout(this.peersTimer);
    for (const off of this.unsubscribe) off();
    // Not io.close(): it would close the HTTP server, which Nest closes itself.
    this.nsp?.disconnectSockets(true);
    this.io?.engine.close();
  }

  /** The application's current rule revision (0 without rules). */
  async revisionOf(application: string): Promise<number> {
    return (await this.store.currentRevisions([application])).get(application) ?? 0;
  }

  // ---- sessions ---------------------------------------------------------------------------------

  private async authenticate(auth: Record<string, unknown>): Promise<Identity | string> {
    const token = auth['token'];
    if (typeof token !== 'string' || token.length === 0 || token.length > 1_024) {
      return 'an agent token is required in the handshake: auth.token';
    }
    const identity = await this.tokens.verify(token);
    if (!identity) return 'unknown or revoked agent token';
    if (identity.role !== 'agent' && identity.role !== 'admin') return `a ${identity.role} token cannot connect an agent`;
    return identity;
  }

  private onConnection(socket: Socket): void {
    const session: Session = {
      identity: (socket.data as { identity: Identity }).identity,
      lastSeen: Date.now(),
      badFrames: 0,
    };
    (socket.data as { session?: Session }).session = session;
    const helloTimer = setTimeout(() => {
      if (!session.instanceId) this.close(socket, 'bad-frame', `no hello within ${HELLO_TIMEOUT_MS} ms`);
    }, HELLO_TIMEOUT_MS);
    helloTimer.unref();
    socket.onAny((event: unknown, ...args: unknown[]) => {
      try {
        this.onFrame(socket, session, event, args);
      } catch (error) {
        this.logger.error({ err: error, instanceId: session.instanceId }, 'agent frame handling failed');
        this.send(socket, { type: 'error', code: 'internal', message: 'the server failed to handle this frame' });
      }
    });
    socket.on('disconnect', () => {
      clearTimeout(helloTimer);
      const { instanceId, application } = session;
      if (!instanceId || !application || this.sessions.get(instanceId) !== socket) return;
      this.sessions.delete(instanceId);
      this.directory.disconnect(instanceId);
      this.peerIndex.agentGone(instanceId);
      this.calleeChanged(application);
      if ((this.nsp?.adapter.rooms.get(room(application))?.size ?? 0) === 0) {
        this.pushed.delete(application);
        this.lastPeers.delete(application);
      }
    });
  }

  private onFrame(socket: Socket, session: Session, event: unknown, args: unknown[]): void {
    session.lastSeen = Date.now();
    const frame = args[0];
    if (args.length !== 1 || typeof frame !== 'object' || frame === null || (frame as { type?: unknown }).type !== event) {
      this.badFrame(socket, session, 'a frame is one JSON object sent as the event named by its "type"');
      return;
    }
    const parsed = AgentMessageSchema.safeParse(frame);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      this.badFrame(
        socket,
        session,
        `invalid ${String(event)} frame: ${issue ? `${issue.path.join('.') || '(frame)'}: ${issue.message}` : ''}`,
      );
      return;
    }
    const message = parsed.data;
    if (message.type === 'hello') {
      this.onHello(socket, session, message);
      return;
    }
    const { instanceId, application, run } = session;
    if (!instanceId || !application || !run) {
      this.badFrame(socket, session, 'the first frame must be hello');
      return;
    }
    this.onSessionFrame(socket, instanceId, application, run, message);
  }

  private onSessionFrame(socket: Socket, instanceId: string, application: string, run: string, message: AgentMessage): void {
    switch (message.type) {
      case 'ack':
        this.answers.inc({ type: 'ack' });
        this.directory.acknowledged(instanceId, message.revision);
        return;
      case 'nack':
        this.answers.inc({ type: 'nack' });
        this.directory.refused(instanceId, message);
        this.logger.warn(
          { instanceId, application, revision: message.revision, reason: message.reason },
          'agent refused a rule set',
        );
        return;
      case 'heartbeat':
        this.directory.heartbeat(instanceId, message.appliedRevision, message.sentAt);
        return;
      case 'breaker-state':
        this.directory.breaker(instanceId, message.ruleId, message.state, message.at);
        return;
      case 'listening':
        this.directory.listening(instanceId, message.ports);
        this.peerIndex.agentListening({
          instanceId,
          application,
          host: this.directory.get(instanceId)?.host ?? '',
          ports: message.ports,
        });
        this.calleeChanged(application);
        return;
      case 'stats':
      case 'records': {
        // Acknowledged once in Kafka (at-least-once: the agent keeps the frame until then); the
        // socket path never waits for it. A session gone by then gets no ack: the agent resends.
        const { type: kind, seq } = message;
        const frame = this.peerIndex.resolveFrame(instanceId, message);
        const accepted = this.stats.accept(application, instanceId, run, frame, () => {
          if (socket.connected) this.send(socket, { type: 'stats-ack', kind, seq, accepted: true });
        });
        if (!accepted) this.send(socket, { type: 'stats-ack', kind, seq, accepted: false });
        return;
      }
      case 'resync':
        this.enqueue(application, async () => {
          const set = await this.ruleSet(application);
          if (socket.connected) this.sendSnapshot(socket, set);
        });
        return;
      case 'hello':
        return;
    }
  }

  private onHello(socket: Socket, session: Session, hello: Extract<AgentMessage, { type: 'hello' }>): void {
    if (session.instanceId) {
      this.badFrame(socket, session, 'hello was already sent on this session');
      return;
    }
    if (hello.protocol !== PROTOCOL_VERSION) {
      this.close(socket, 'unsupported-protocol', `this server speaks protocol ${PROTOCOL_VERSION}, not ${hello.protocol}`);
      return;
    }
    const scope = session.identity.applications;
    if (scope && !scope.includes(hello.application)) {
      this.refused.inc({ reason: 'unauthorized' });
      this.close(socket, 'unauthorized', `this token may not speak for application "${hello.application}"`);
      return;
    }
    session.instanceId = hello.instanceId;
    session.application = hello.application;
    session.run = hello.run;
    const previous = this.sessions.get(hello.instanceId);
    this.sessions.set(hello.instanceId, socket);
    // The same instance reconnected before its old session timed out: the new one wins.
    if (previous && previous !== socket) previous.disconnect(true);
    this.peerIndex.agentListening(this.directory.connect(hello, socket.handshake.address));
    this.send(socket, {
      type: 'welcome',
      protocol: PROTOCOL_VERSION,
      heartbeatMs: this.settings.heartbeatMs,
      serverTime: Date.now(),
    });
    const application = hello.application;
    this.enqueue(application, async () => {
      const set = await this.ruleSet(application);
      if (!socket.connected) return;
      // Joined inside the queue: no delta reaches this agent before its snapshot.
      await socket.join(room(application));
      // Addresses before rules, so the rules' callees are nameable once they apply.
      const peers = this.peersFrame(application);
      if (!this.lastPeers.has(application)) this.lastPeers.set(application, JSON.stringify(peers.addresses));
      this.send(socket, peers);
      if (hello.heldRevision !== set.revision) this.sendSnapshot(socket, set);
    });
    this.calleeChanged(application);
  }

  private badFrame(socket: Socket, session: Session, message: string): void {
    this.refused.inc({ reason: 'bad-frame' });
    session.badFrames += 1;
    if (session.badFrames > MAX_BAD_FRAMES) {
      this.close(socket, 'bad-frame', `too many invalid frames; last: ${message}`);
      return;
    }
    this.send(socket, { type: 'error', code: 'bad-frame', message: message.slice(0, 2_000) });
  }

  private close(socket: Socket, code: ErrorCode, message: string): void {
    this.send(socket, { type: 'error', code, message });
    socket.disconnect(true);
  }

  private send(socket: Socket, frame: ServerMessage): void {
    socket.emit(frame.type, frame);
  }

  /** Closes sessions silent for three heartbeat periods, and forgets old disconnected agents. */
  private sweep(): void {
    const deadline = Date.now() - 3 * this.settings.heartbeatMs;
    for (const socket of this.sessions.values()) {
      const session = (socket.data as { session?: Session }).session;
      if (session && session.lastSeen < deadline) {
        this.close(socket, 'bad-frame', `silent for ${3 * this.settings.heartbeatMs} ms (three heartbeat periods)`);
      }
    }
    this.directory.sweep();
  }

  // ---- rule push --------------------------------------------------------------------------------

  private enqueue(application: string, work: () => Promise<void>): void {
    const previous = this.queues.get(application) ?? Promise.resolve();
    const next = previous.then(work).catch((error: unknown) => {
      this.logger.error({ err: error, application }, 'rule push failed');
    });
    this.queues.set(application, next);
    void next.then(() => {
      if (this.queues.get(application) === next) this.queues.delete(application);
    });
  }

  /** The application's rule set as last pushed, loaded on first need. */
  private async ruleSet(application: string): Promise<PushedRuleSet> {
    const known = this.pushed.get(application);
    if (known) return known;
    const stored = await this.store.storedSet(application);
    const set = this.pushed.get(application) ?? new PushedRuleSet(application, stored.revision, stored.rules);
    this.pushed.set(application, set);
    return set;
  }

  private sendSnapshot(socket: Socket, set: PushedRuleSet): void {
    this.pushes.inc({ kind: 'snapshot' });
    socket.emit('snapshot', set.snapshot);
  }

  private onRuleSetChanged(application: string, revision: number): void {
    const known = this.pushed.get(application);
    if (!known || revision <= known.revision) return;
    this.enqueue(application, async () => {
      const previous = this.pushed.get(application);
      if (!previous) return;
      const stored = await this.store.storedSet(application);
      if (stored.revision <= previous.revision) return;
      const next = new PushedRuleSet(application, stored.revision, stored.rules);
      this.pushed.set(application, next);
      // One frame for the room, encoded once. Sent in one synchronous loop: slicing it to let other
      // work in between was measured (docs/benchmarks.md) and delays the last agents by the ACKs
      // of the first, which matters more than an API call waiting for the loop.
      // The callees' addresses first, not debounced: a new rule's callee must be nameable by the
      // time the agent applies (and acknowledges) the rule.
      this.emitPeersIfChanged(application);
      this.nsp?.to(room(application)).emit('delta', previous.deltaTo(next));
      this.pushes.inc({ kind: 'delta' });
    });
  }

  /** Reads back the revisions of applications with agents: writes by other replicas or behind the API's back. */
  private async pollRevisions(): Promise<void> {
    if (this.polling || this.pushed.size === 0) return;
    this.polling = true;
    try {
      const revisions = await this.store.currentRevisions([...this.pushed.keys()]);
      for (const [application, revision] of revisions) this.onRuleSetChanged(application, revision);
    } catch (error) {
      this.logger.warn({ err: error }, 'reading rule revisions failed; retrying');
    } finally {
      this.polling = false;
    }
  }

  // ---- peers: where callees listen --------------------------------------------------------------

  /** Instances of `application` came or went: every application calling it gets a new address map. */
  private calleeChanged(application: string): void {
    for (const set of this.pushed.values()) if (set.callees.has(application)) this.peersDirty.add(set.application);
    this.schedulePeers();
  }

  private schedulePeers(): void {
    if (this.peersTimer || this.peersDirty.size === 0) return;
    this.peersTimer = setTimeout(() => {
      this.peersTimer = undefined;
      const dirty = [...this.peersDirty];
      this.peersDirty.clear();
      for (const application of dirty) this.emitPeersIfChanged(application);
    }, PEERS_DEBOUNCE_MS);
    this.peersTimer.unref();
  }

  private emitPeersIfChanged(application: string): void {
    const frame = this.peersFrame(application);
    const json = JSON.stringify(frame.addresses);
    if (this.lastPeers.get(application) === json) return;
    this.lastPeers.set(application, json);
    this.nsp?.to(room(application)).emit('peers', frame);
  }

  private peersFrame(application: string): PeersFrame {
    const addresses = new Map<string, string>();
    for (const callee of this.pushed.get(application)?.callees ?? []) {
      for (const address of this.cluster.addresses(callee)) addresses.set(address, callee);
      for (const instance of this.bridge.catalog.instances({ application: callee }, { limit: MAX_PEER_ADDRESSES }).items) {
        const host = instance.host.includes(':') ? `[${instance.host}]` : instance.host;
        addresses.set(`${host}:${instance.port}`, callee);
      }
    }
    const list = [...addresses]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .slice(0, MAX_PEER_ADDRESSES)
      .map(([address, app]) => ({ address, application: app }));
    return { type: 'peers', application, addresses: list };
  }
}

/** A handshake refusal: the client's connect_error carries `message` and `data: {code, message}`. */
function refusal(code: ErrorCode, message: string): Error {
  return Object.assign(new Error(message), { data: { code, message } });
}
