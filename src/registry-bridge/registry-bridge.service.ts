import { Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { Counter, Gauge } from 'prom-client';
import type { AppConfig } from '../config/app-config.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { type CatalogChange, ServiceCatalog } from './catalog.js';
import { EurekaSource } from './eureka/eureka.source.js';
import type { RegistrySource, SourceLogger } from './registration.js';
import { ZookeeperDubboSource } from './zookeeper/zookeeper-dubbo.source.js';

/** How many past changes a reconnecting stream reader can resume from. */
const HISTORY = 10_000;

/**
 * Owns the catalog and the registry sources configured for this deployment. A source that fails
 * marks its own entries stale; it never stops the catalog, the other source or the server.
 */
@Injectable()
export class RegistryBridge implements OnApplicationBootstrap, OnModuleDestroy {
  readonly catalog: ServiceCatalog;
  readonly sources: RegistrySource[] = [];
  private readonly history: CatalogChange[] = [];
  private readonly unsubscribe: () => void;

  constructor(
    config: ConfigService<AppConfig, true>,
    metrics: MetricsService,
    @InjectPinoLogger(RegistryBridge.name) private readonly logger: PinoLogger,
  ) {
    const badInput = new Counter({
      name: 'steward_registry_bad_input_total',
      help: 'Registry entries that could not be read and were skipped, by source and kind.',
      labelNames: ['source', 'kind'] as const,
      registers: [metrics.registry],
    });
    this.catalog = new ServiceCatalog({
      debounceMs: config.get('registry', { infer: true }).debounceMs,
      onBadInput: (source, kind) => badInput.inc({ source, kind }),
    });
    this.unsubscribe = this.catalog.subscribe((changes) => {
      this.history.push(...changes);
      if (this.history.length > HISTORY) this.history.splice(0, this.history.length - HISTORY);
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
        for (const s of catalog.sources()) this.set({ source: s.source }, s.reachable ? 1 : 0);
      },
    });

    const log: SourceLogger = {
      info: (details, message) => this.logger.info(details, message),
      warn: (details, message) => this.logger.warn(details, message),
      error: (details, message) => this.logger.error(details, message),
    };
    const zk = config.get('zookeeper', { infer: true });
    if (zk) {
      this.sources.push(
        new ZookeeperDubboSource({
          connect: zk.connect,
          roots: zk.dubboRoots,
          sessionTimeoutMs: zk.sessionTimeoutMs,
          logger: log,
        }),
      );
    }
    const eureka = config.get('eureka', { infer: true });
    if (eureka) this.sources.push(new EurekaSource({ urls: eureka.urls, fetchIntervalMs: eureka.fetchIntervalMs, logger: log }));
  }

  async onApplicationBootstrap(): Promise<void> {
    // Sources connect in the background: an unreachable registry is reported, never awaited.
    await Promise.all(this.sources.map((source) => source.start(this.catalog)));
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.sources.map((source) => source.stop()));
    this.unsubscribe();
    this.catalog.close();
  }

  /** Changes after `seq`, or undefined when they are no longer kept (the reader must reload). */
  changesSince(seq: number): CatalogChange[] | undefined {
    this.catalog.flush();
    if (seq >= this.catalog.lastSeq()) return [];
    const first = this.history[0];
    if (!first || first.seq > seq + 1) return undefined;
    return this.history.filter((c) => c.seq > seq);
  }
}
