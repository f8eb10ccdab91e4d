import { Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { Kafka, logLevel } from 'kafkajs';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { Counter, Gauge } from 'prom-client';
import { REPLICA_ID } from '../common/kafka-broadcast.js';
import { KafkaLeaderElection, type LeadershipRole } from '../common/kafka-leader-election.js';
import type { AppConfig } from '../config/app-config.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { type CatalogChange, ServiceCatalog } from './catalog.js';
import { applyToCatalog, type BridgeLeader, type CatalogRecord, CatalogTopicState, reconcileCatalog } from './catalog-records.js';
import { EurekaSource } from './eureka/eureka.source.js';
import { KafkaCatalogFeed } from './kafka-catalog-feed.js';
import type { RegistrationSink, RegistrySource, SourceLogger } from './registration.js';
import { ReplicatingSink } from './replicating-sink.js';
import { ZookeeperDubboSource } from './zookeeper/zookeeper-dubbo.source.js';

/** How many past changes a reconnecting stream reader can resume from. */
const HISTORY = 10_000;
/** A new leader reads the catalog topic to its end before its sources diff against it; bounded. */
const CATCH_UP_MS = 60_000;

/**
 * What this replica does with the registries:
 * - `leader`: elected; its sources write into the catalog and the catalog topic;
 * - `follower`: another replica leads; the catalog is what the topic says;
 * - `waiting`: no role known yet (starting, or Kafka away); the catalog is what the topic said;
 * - `standalone`: reads the registries itself and shares nothing (`REGISTRY_BRIDGE_MODE=always`,
 *   no registry configured, or no role known for `REGISTRY_BRIDGE_FALLBACK_MS`).
 */
export type BridgeRole = 'leader' | 'follower' | 'waiting' | 'standalone';

export interface BridgeStatus {
  replica: string;
  mode: 'leader' | 'always';
  role: BridgeRole;
  /** When this replica took its current role (ms since the epoch). */
  since: number;
  /** Which replica reads the registries for the cluster, as the catalog topic says (null: none named). */
  leader: BridgeLeader | null;
  /** Ids of the sources running here: empty unless leader or standalone. */
  readingHere: string[];
  group: string | null;
  leaseTopic: string | null;
  catalogTopic: string | null;
}

interface Replication {
  election: KafkaLeaderElection;
  feed: KafkaCatalogFeed;
  /** The catalog topic as read so far. */
  topic: CatalogTopicState;
}

let bridgesInProcess = 0;

/**
 * Owns the catalog and the registry sources configured for this deployment. A source that fails
 * marks its own entries stale; it never stops the catalog, the other source or the server.
 *
 * Among several replicas (`REGISTRY_BRIDGE_MODE=leader`, the default), the sources run on one of
 * them, elected through a Kafka consumer group (KafkaLeaderElection), and every replica builds its
 * catalog from the compacted catalog topic the leader writes (ReplicatingSink, KafkaCatalogFeed).
 * Kafka being away never leaves a replica without a catalog for ever: after
 * `REGISTRY_BRIDGE_FALLBACK_MS` without a role, it reads the registries itself.
 */
@Injectable()
export class RegistryBridge implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly catalog: ServiceCatalog;
  /** This server among the replicas (several bridges in one process, as in tests, get a suffix). */
  readonly replica: string;
  private readonly bridgeConfig: AppConfig['registry']['bridge'];
  private readonly createSources: () => RegistrySource[];
  private readonly replication?: Replication;
  private running: RegistrySource[] = [];
  private role: BridgeRole;
  private roleSince = Date.now();
  /** The leader's sink while leading. */
  private tee?: ReplicatingSink;
  /** Whether the catalog holds what this replica's own sources read (so it may differ from the topic). */
  private catalogReadHere = false;
  private transitions: Promise<void> = Promise.resolve();
  private fallbackTimer?: NodeJS.Timeout;
  private closing = false;
  private readonly history: CatalogChange[] = [];
  private readonly unsubscribe: () => void;
  private readonly log: SourceLogger;

  constructor(
    config: ConfigService<AppConfig, true>,
    metrics: MetricsService,
    @InjectPinoLogger(RegistryBridge.name) private readonly logger: PinoLogger,
  ) {
    bridgesInProcess += 1;
    this.replica = bridgesInProcess === 1 ? REPLICA_ID : `${REPLICA_ID}.${bridgesInProcess}`;
    const badInput = new Counter({
      name: 'steward_registry_bad_input_total',
      help: 'Registry entries that could not be read and were skipped, by source and kind.',
      labelNames: ['source', 'kind'] as const,
      registers: [metrics.registry],
    });
    const registry = config.get('registry', { infer: true });
    this.bridgeConfig = registry.bridge;
    this.catalog = new ServiceCatalog({
      debounceMs: registry.debounceMs,
      onBadInput: (source, kind) => badInput.inc({ source, kind }),
    });
    this.unsubscribe = this.catalog.subscribe((changes) => {
      this.history.push(...changes);
      if (this.history.length > HISTORY) this.history.splice(0, this.history.length - HISTORY);
    });
    this.log = {
      info: (details, message) => this.logger.info(details, message),
      warn: (details, message) => this.logger.warn(details, message),
      error: (details, message) => this.logger.error(details, message),
    };

    const zk = config.get('zookeeper', { infer: true });
    const eureka = config.get('eureka', { infer: true });
    // Fresh sources for every term: a stopped source keeps state (known keys, reachability) that
    // a later start must not trust.
    this.createSources = () => [
      ...(zk
        ? [
            new ZookeeperDubboSource({
              connect: zk.connect,
              roots: zk.dubboRoots,
              sessionTimeoutMs: zk.sessionTimeoutMs,
              logger: this.log,
            }),
          ]
        : []),
      ...(eureka ? [new EurekaSource({ urls: eureka.urls, fetchIntervalMs: eureka.fetchIntervalMs, logger: this.log })] : []),
    ];

    const catalogMessages = new Counter({
      name: 'steward_registry_catalog_messages_total',
      help: 'Catalog topic messages: published by this replica as leader, read, or malformed and skipped.',
      labelNames: ['event'] as const,
      registers: [metrics.registry],
    });
    if (this.bridgeConfig.mode === 'leader' && (zk || eureka)) {
      const kafkaConfig = config.get('kafka', { infer: true });
      const kafka = new Kafka({
        clientId: `${kafkaConfig.clientId}-bridge`,
        brokers: kafkaConfig.brokers,
        logLevel: logLevel.NOTHING,
      });
      const topic = new CatalogTopicState();
      this.replication = {
        topic,
        election: new KafkaLeaderElection({
          kafka,
          groupId: this.bridgeConfig.group,
          topic: this.bridgeConfig.leaseTopic,
          memberName: this.replica,
          sessionTimeoutMs: this.bridgeConfig.sessionTimeoutMs,
          logger: this.log,
        }),
        feed: new KafkaCatalogFeed({
          kafka,
          topic: this.bridgeConfig.catalogTopic,
          replica: this.replica,
          logger: this.log,
          onRecord: (record, own) => {
            catalogMessages.inc({ event: 'read' });
            this.receive(record, own);
          },
          onMalformed: (reason) => {
            catalogMessages.inc({ event: 'malformed' });
            this.logger.warn({ reason, topic: this.bridgeConfig.catalogTopic }, 'malformed catalog record skipped');
          },
          onPublished: (count) => catalogMessages.inc({ event: 'published' }, count),
        }),
      };
      this.role = 'waiting';
    } else {
      this.role = 'standalone';
    }

    const currentRole = () => this.role;
    new Gauge({
      name: 'steward_registry_bridge_leader',
      help: 'Whether this replica is the elected one reading the registries for the cluster (1) or not (0).',
      registers: [metrics.registry],
      collect() {
        this.set(currentRole() === 'leader' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'steward_registry_bridge_role',
      help: "This replica's registry bridge role: 1 for the current one (leader, follower, waiting, standalone).",
      labelNames: ['role'] as const,
      registers: [metrics.registry],
      collect() {
        for (const role of ['leader', 'follower', 'waiting', 'standalone'] as const)
          this.set({ role }, currentRole() === role ? 1 : 0);
      },
    });
    const catalog = this.catalog;
    new Gauge({
      name: 'steward_registry_instances',
      help: 'Instances in the catalog, by kind, status and whether they are stale.',
      labelNames: ['kind', 'status', 'stale'] as const,
      registers: [metrics.registry],
      collect() {
        this.reset();
        for (const i of catalog.instances({}, { limit: Number.MAX_SAFE_INTEGER }).items) {
          this.inc({ kind: i.kind, status: i.status, stale: String(i.stale) });
        }
      },
    });
    new Gauge({
      name: 'steward_registry_source_reachable',
      help: 'Whether a registry source currently reaches its registry (1) or serves stale entries (0).',
      labelNames: ['source'] as const,
      registers: [metrics.registry],
      collect() {
        this.reset();
        for (const s of catalog.sources()) this.set({ source: s.source }, s.reachable ? 1 : 0);
      },
    });
  }

  /** The sources running on this replica: none unless it leads or reads alone. */
  get sources(): readonly RegistrySource[] {
    return this.running;
  }

  async onApplicationBootstrap(): Promise<void> {
    const replication = this.replication;
    if (!replication) {
      // Sources connect in the background: an unreachable registry is reported, never awaited.
      this.running = this.createSources();
      this.catalogReadHere = true;
      await Promise.all(this.running.map((source) => source.start(this.catalog)));
      return;
    }
    // Kafka is never awaited here: the server starts and serves whatever Kafka does.
    replication.feed.start();
    replication.election.onChange((role) => this.enqueue(() => this.follow(role)));
    replication.election.start();
    this.fallbackTimer = setInterval(() => {
      if (this.role === 'waiting' && Date.now() - this.roleSince >= this.bridgeConfig.fallbackMs) {
        this.enqueue(() => this.readAlone());
      }
    }, 1_000);
    this.fallbackTimer.unref();
  }

  /**
   * After the shutdown drain (not in onModuleDestroy, which runs before readiness turns 503): a
   * leader keeps reading the registries while the replica drains, then hands the lease over.
   */
  async onApplicationShutdown(): Promise<void> {
    this.closing = true;
    clearInterval(this.fallbackTimer);
    await this.transitions;
    const tee = this.tee;
    this.tee = undefined;
    await this.stopSources();
    const replication = this.replication;
    if (replication) {
      if (tee) {
        // Tell the others no one leads, and let the last changes land before the lease moves.
        tee.send([{ type: 'leader', leader: null }]);
        await replication.feed.flush(2_000);
      }
      await Promise.all([replication.election.stop(), replication.feed.stop()]);
    }
    this.unsubscribe();
    this.catalog.close();
  }

  status(): BridgeStatus {
    const replicated = this.replication !== undefined;
    return {
      replica: this.replica,
      mode: this.bridgeConfig.mode,
      role: this.role,
      since: this.roleSince,
      leader:
        this.role === 'leader' ? { replica: this.replica, since: this.roleSince } : (this.replication?.topic.leader ?? null),
      readingHere: this.running.map((s) => s.id),
      group: replicated ? this.bridgeConfig.group : null,
      leaseTopic: replicated ? this.bridgeConfig.leaseTopic : null,
      catalogTopic: replicated ? this.bridgeConfig.catalogTopic : null,
    };
  }

  /** Changes after `seq`, or undefined when they are no longer kept (the reader must reload). */
  changesSince(seq: number): CatalogChange[] | undefined {
    this.catalog.flush();
    if (seq >= this.catalog.lastSeq()) return [];
    const first = this.history[0];
    if (!first || first.seq > seq + 1) return undefined;
    return this.history.filter((c) => c.seq > seq);
  }

  // ---- roles ------------------------------------------------------------------------------------

  /** A record read from the catalog topic. */
  private receive(record: CatalogRecord, own: boolean): void {
    this.replication?.topic.apply(record);
    // Another replica writing while this one leads (the previous leader's last sends): the base
    // of this leader's diffs must include it, or a registration it removed would never come back.
    if (this.role === 'leader' && !own) this.tee?.expected.apply(record);
    if (this.role === 'follower' || this.role === 'waiting') applyToCatalog(this.catalog, record);
  }

  /** Runs role changes one at a time, in the order the election reported them. */
  private enqueue(transition: () => Promise<void>): void {
    this.transitions = this.transitions.then(transition).catch((error: unknown) => {
      this.logger.error({ err: error }, 'registry bridge role change failed');
    });
  }

  private follow(election: LeadershipRole): Promise<void> {
    if (this.closing) return Promise.resolve();
    if (election === 'leader') return this.lead();
    if (election === 'follower') return this.becomeFollower();
    return this.loseRole();
  }

  private async lead(): Promise<void> {
    const { election, feed, topic } = this.replication!;
    if (this.role === 'leader') return;
    await this.stopSources();
    this.setRole('waiting');
    const started = Date.now();
    const caughtUp = await feed.caughtUp(CATCH_UP_MS, () => election.role === 'leader' && !this.closing);
    if (election.role !== 'leader' || this.closing) return;
    if (!caughtUp) {
      this.logger.warn(
        { topic: this.bridgeConfig.catalogTopic, waitedMs: Date.now() - started },
        'leading before reading the catalog topic to its end: entries gone meanwhile may stay until their source resyncs',
      );
    }
    const tee = new ReplicatingSink(this.catalog, topic.clone(), (records) => feed.publish(records));
    this.tee = tee;
    const sources = this.createSources();
    tee.retireSourcesExcept(
      sources.map((s) => s.id),
      (source) => this.catalog.dropSource(source),
    );
    const since = Date.now();
    tee.send([{ type: 'leader', leader: { replica: this.replica, since } }]);
    this.setRole('leader');
    this.logger.info(
      { replica: this.replica, sources: sources.map((s) => s.id), catchUpMs: since - started },
      'registry bridge: this replica reads the registries for the cluster',
    );
    this.startSources(sources, tee);
  }

  private async becomeFollower(): Promise<void> {
    const { election, feed, topic } = this.replication!;
    if (this.role === 'follower') return;
    await this.stopSources();
    this.setRole('follower');
    if (!this.catalogReadHere) return;
    // What this replica read itself may differ from the topic (sends that never landed, changes
    // read while alone): once the topic is read to its end, the catalog becomes what it says.
    await feed.caughtUp(CATCH_UP_MS, () => election.role === 'follower' && !this.closing);
    // A role change queued meanwhile handles the catalog its own way.
    if (election.role !== 'follower' || this.closing) return;
    reconcileCatalog(this.catalog, topic);
    this.catalogReadHere = false;
  }

  private async loseRole(): Promise<void> {
    if (this.role === 'leader') await this.stopSources();
    // Reading alone goes on until the election gives a role again.
    if (this.role === 'leader' || this.role === 'follower') this.setRole('waiting');
  }

  private readAlone(): Promise<void> {
    if (this.role !== 'waiting' || this.closing) return Promise.resolve();
    this.logger.warn(
      { fallbackMs: this.bridgeConfig.fallbackMs, group: this.bridgeConfig.group },
      'registry bridge: no leader election through Kafka; this replica reads the registries itself until there is one',
    );
    const sources = this.createSources();
    this.setRole('standalone');
    this.startSources(sources, this.catalog);
    return Promise.resolve();
  }

  private startSources(sources: RegistrySource[], sink: RegistrationSink): void {
    this.running = sources;
    this.catalogReadHere = true;
    for (const source of sources) {
      // An unreachable registry is reported by the source to the catalog, never awaited.
      source
        .start(sink)
        .catch((error: unknown) => this.logger.error({ err: error, source: source.id }, 'registry source failed to start'));
    }
  }

  private async stopSources(): Promise<void> {
    const stopping = this.running;
    this.running = [];
    await Promise.all(stopping.map((source) => source.stop().catch(() => undefined)));
    if (this.tee) {
      this.tee = undefined;
      // What is still queued was read by a leader that no longer is: the next one reads afresh.
      this.replication?.feed.dropQueued();
    }
  }

  private setRole(role: BridgeRole): void {
    if (this.role === role) return;
    this.role = role;
    this.roleSince = Date.now();
  }
}
