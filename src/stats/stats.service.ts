import { Injectable, type OnApplicationBootstrap, type OnApplicationShutdown, type OnModuleDestroy } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { MongoClient } from 'mongodb';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import type { AppConfig } from '../config/app-config.js';
import { MetricsService } from '../metrics/metrics.service.js';
import type { Observable } from 'rxjs';
import { LiveRelay } from './live-relay.js';
import { type LiveSecond, LiveSeconds } from './live-seconds.js';
import { StatsAggregator } from './stats-aggregator.js';
import { StatsStore } from './stats-store.js';

/**
 * The stats runtime of this server: the store (its own MongoDB driver client: bulk writes and
 * aggregation reads, no mongoose models), the live per-second stream, and, unless
 * `STATS_AGGREGATOR=off`, the aggregator consuming the stats topic in this process.
 */
@Injectable()
export class StatsService implements OnApplicationBootstrap, OnModuleDestroy, OnApplicationShutdown {
  readonly store: StatsStore;
  /** The seconds this process's aggregator settles (published to every server through `relay`). */
  readonly live = new LiveSeconds();
  /** Every aggregator's live seconds. */
  readonly relay: LiveRelay;
  readonly aggregator?: StatsAggregator;
  private readonly client: MongoClient;

  constructor(
    config: ConfigService<AppConfig, true>,
    metrics: MetricsService,
    @InjectPinoLogger('StatsAggregator') logger: PinoLogger,
  ) {
    const { uri } = config.get('mongodb', { infer: true });
    const kafka = config.get('kafka', { infer: true });
    const stats = config.get('stats', { infer: true });
    // The driver connects on first use and reconnects by itself; a database outage fails operations
    // after 5 s, which the aggregator retries and the API answers with 500.
    this.client = new MongoClient(uri, { serverSelectionTimeoutMS: 5_000 });
    this.store = new StatsStore(this.client.db());
    this.relay = new LiveRelay({
      brokers: kafka.brokers,
      clientId: kafka.clientId,
      topic: stats.liveTopic,
      warn: (details, message) => logger.warn(details, message),
    });
    if (stats.aggregator) {
      this.aggregator = new StatsAggregator({
        brokers: kafka.brokers,
        clientId: kafka.clientId,
        topic: stats.topic,
        store: this.store,
        live: this.live,
        registry: metrics.registry,
        logger: {
          info: (obj, msg) => logger.info(obj, msg),
          warn: (obj, msg) => logger.warn(obj, msg),
          error: (obj, msg) => logger.error(obj, msg),
        },
      });
    }
  }

  /** Whether this process aggregates (it publishes live seconds then). */
  get aggregating(): boolean {
    return this.aggregator !== undefined;
  }

  onApplicationBootstrap(): void {
    this.relay.start();
    if (this.aggregator) {
      this.live.start();
      this.relay.publish(this.live);
      this.aggregator.start();
    }
  }

  /** Every aggregator's settled seconds, of one application or of all. */
  liveStream(application?: string): Observable<LiveSecond> {
    return this.relay.stream(application);
  }

  /** Live streams end first: an open one would keep the HTTP server from closing. */
  onModuleDestroy(): void {
    this.live.stop();
    this.relay.close();
  }

  /**
   * After the shutdown drain and the HTTP server's close: the aggregator keeps working until then.
   * Leaving the consumer group can wait on a rebalance for many seconds; it is bounded, since
   * whatever was not committed is redelivered and counted once anyway (idempotent facts).
   */
  async onApplicationShutdown(): Promise<void> {
    const bounded = (work: Promise<unknown> | undefined, ms: number) =>
      Promise.race([work?.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
    await bounded(this.aggregator?.stop(), 3_000);
    await bounded(this.relay.stop(), 2_000);
    await bounded(this.client.close(), 1_000);
  }
}
