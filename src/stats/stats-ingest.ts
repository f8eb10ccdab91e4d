import { Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { CompressionTypes, Kafka, logLevel, type Producer } from 'kafkajs';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { Counter, Gauge } from 'prom-client';
import { sendSize } from '../common/kafka-topic.js';
import type { AppConfig } from '../config/app-config.js';
import { MetricsService } from '../metrics/metrics.service.js';
import { ensureStatsTopic } from './stats-aggregator.js';
import type { StatsMessageValue } from './stats-message.js';

type StatsOrRecordsFrame = StatsMessageValue['frame'];

/** Frames waiting for Kafka at most; beyond, new frames are refused (counted), the sockets never wait. */
const MAX_QUEUED = 50_000;
const MAX_BATCH = 2_000;
const RETRY_MS = [100, 250, 500, 1_000, 2_000, 5_000];

/** Called once the frame is in Kafka (the produce of its batch resolved); never when it is not. */
export type Produced = () => void;

/**
 * Agents' statistics and call-record frames, validated by the agent hub, on their way to Kafka:
 * a bounded queue in front of one idempotent producer, keyed by application so one application's
 * frames keep their order in a partition. The socket path only enqueues; each frame's `produced`
 * callback lets the hub acknowledge it to its agent (docs/agent-protocol.md, `stats-ack`).
 */
@Injectable()
export class StatsIngest implements OnApplicationShutdown {
  private readonly queue: { key: string; value: string; produced: Produced }[] = [];
  private readonly kafka: Kafka;
  private readonly producer: Producer;
  private readonly topic: string;
  private connected?: Promise<void>;
  private sending = false;
  private failures = 0;
  private closed = false;
  private readonly frames: Counter<'outcome'>;

  constructor(
    config: ConfigService<AppConfig, true>,
    metrics: MetricsService,
    @InjectPinoLogger(StatsIngest.name) private readonly logger: PinoLogger,
  ) {
    const kafka = config.get('kafka', { infer: true });
    this.topic = config.get('stats', { infer: true }).topic;
    this.kafka = new Kafka({ clientId: `${kafka.clientId}-stats`, brokers: kafka.brokers, logLevel: logLevel.NOTHING });
    this.producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
    });
    this.frames = new Counter({
      name: 'steward_stats_frames_total',
      help: 'Statistics and call-record frames from agents: produced to Kafka, or dropped (queue full; the agent is told and sends it again).',
      labelNames: ['outcome'] as const,
      registers: [metrics.registry],
    });
    const queue = this.queue;
    new Gauge({
      name: 'steward_stats_queue',
      help: 'Frames waiting to be produced to Kafka.',
      registers: [metrics.registry],
      collect() {
        this.set(queue.length);
      },
    });
  }

  /**
   * Queues one validated frame; `produced` runs once it is in Kafka. False when the queue is full
   * or shutting down: the frame is dropped (and counted), `produced` never runs.
   */
  accept(application: string, instanceId: string, run: string, frame: StatsOrRecordsFrame, produced: Produced): boolean {
    if (this.closed || this.queue.length >= MAX_QUEUED) {
      this.frames.inc({ outcome: 'dropped' });
      return false;
    }
    const message: StatsMessageValue = { v: 1, application, instanceId, run, receivedAt: Date.now(), frame };
    this.queue.push({ key: application, value: JSON.stringify(message), produced });
    void this.drain();
    return true;
  }

  /** After the HTTP server closed (no agent sends more): what is queued gets a moment to go out. */
  async onApplicationShutdown(): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + 3_000;
    while (this.queue.length > 0 && this.failures === 0 && Date.now() < deadline) await sleep(20);
    await this.producer.disconnect().catch(() => undefined);
  }

  private async drain(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.slice(0, sendSize(this.queue, MAX_BATCH));
        try {
          // The topic may not exist yet when no aggregator has started (it creates it too).
          this.connected ??= ensureStatsTopic(this.kafka, this.topic).then(() => this.producer.connect());
          await this.connected;
          await this.producer.send({
            topic: this.topic,
            acks: -1,
            // A frame near AGENT_MAX_FRAME_BYTES alone would be over the broker's limit uncompressed.
            compression: CompressionTypes.GZIP,
            messages: batch.map(({ key, value }) => ({ key, value })),
          });
          this.queue.splice(0, batch.length);
          this.frames.inc({ outcome: 'produced' }, batch.length);
          this.failures = 0;
          this.notify(batch);
        } catch (error) {
          this.connected = undefined;
          const wait = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)]!;
          if (this.failures === 0)
            this.logger.warn({ err: error, queued: this.queue.length }, 'producing stats to Kafka failed; retrying');
          this.failures += 1;
          if (this.closed) return;
          await sleep(wait);
        }
      }
    } finally {
      this.sending = false;
    }
  }

  /** Each callback guarded: one that throws must not pass for a failed produce (the batch would go again). */
  private notify(batch: readonly { produced: Produced }[]): void {
    for (const { produced } of batch) {
      try {
        produced();
      } catch (error) {
        this.logger.error({ err: error }, 'acknowledging a produced stats frame failed');
      }
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
