import { CompressionTypes, type Kafka, type KafkaMessage, type Message, type Producer } from 'kafkajs';
import { ensureTopic } from '../common/kafka-topic.js';
import { SupervisedConsumer } from '../common/supervised-consumer.js';
import { type CatalogRecord, decodeRecord, encodeRecord } from './catalog-records.js';
import type { SourceLogger } from './registration.js';

export interface KafkaCatalogFeedOptions {
  kafka: Kafka;
  topic: string;
  /** This replica: its consumer group is its own, its messages carry it. */
  replica: string;
  logger: SourceLogger;
  /** Every valid record of the topic, in order, from its beginning; `own` when this replica produced it. */
  onRecord: (record: CatalogRecord, own: boolean) => void;
  onMalformed: (reason: string) => void;
  onPublished?: (count: number) => void;
}

/** Topic settings: compaction keeps the last record per key; rolling segments hourly lets it run. */
export const CATALOG_TOPIC_CONFIGS = { 'cleanup.policy': 'compact', 'segment.ms': '3600000' };

const BACKOFF_MS = [500, 1_000, 2_000, 5_000, 10_000];
/** One send at most this much (uncompressed), under the broker's default 1 MiB batch limit. */
const CHUNK_BYTES = 512 * 1024;
const CHUNK_MESSAGES = 2_000;
const ORIGIN = 'origin';
const SEQ = 'seq';

interface Pending {
  message: Message;
  bytes: number;
}

/**
 * The catalog topic's transport. Publishing: records are queued and sent in order by one loop,
 * in chunks (a burst of 25,000 registrations is some fifty requests, not 25,000), gzip-compressed,
 * retried until they land or the queue is dropped (leadership lost). Reading: a consumer of a
 * group of its own reads the topic from its beginning, recreated with backoff after any failure,
 * and hands every valid record over; a malformed one is reported and skipped.
 */
export class KafkaCatalogFeed {
  private readonly producer: Producer;
  private producerReady?: Promise<void>;
  private queue: Pending[] = [];
  /** Bumped when the queue is dropped: a send in flight then belongs to the past. */
  private epoch = 0;
  private draining?: Promise<void>;
  private seq = 0;
  /** Records sent and not yet read back, by message key: the object read back is this one, unparsed. */
  private readonly inFlight = new Map<string, { seq: number; record: CatalogRecord }>();
  /** Next offset to read, per partition. */
  private readonly positions = new Map<number, number>();
  private readonly consumer: SupervisedConsumer;
  private stopped = false;

  constructor(private readonly options: KafkaCatalogFeedOptions) {
    const { kafka, topic, replica, logger } = options;
    this.producer = kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 3 } });
    this.consumer = new SupervisedConsumer({
      kafka,
      config: {
        groupId: `steward-catalog.${replica}`,
        allowAutoTopicCreation: false,
        // A replica starting reads the whole topic: large fetches make that quick.
        maxBytesPerPartition: 8 * 1024 * 1024,
        // An idle fetch returns within a second, so a shutdown does not wait for one for long.
        maxWaitTimeInMs: 1_000,
      },
      prepare: () => ensureTopic(kafka, topic, 1, CATALOG_TOPIC_CONFIGS),
      subscribe: { topics: [topic], fromBeginning: true },
      run: {
        eachBatch: async (payload) => {
          const { batch } = payload;
          for (const message of batch.messages) {
            if (!payload.isRunning() || payload.isStale()) return;
            this.receive(message);
            payload.resolveOffset(message.offset);
            this.positions.set(batch.partition, Number(message.offset) + 1);
          }
          this.positions.set(batch.partition, Number(batch.lastOffset()) + 1);
          await payload.heartbeat();
        },
      },
      onError: (error) => logger.warn({ err: error, topic }, 'reading the catalog topic failed; retrying'),
    });
  }

  start(): void {
    this.consumer.start();
  }

  /** Queues records for the topic, in order; never throws, never waits. */
  publish(records: CatalogRecord[]): void {
    if (this.stopped) return;
    for (const record of records) {
      const { key, value } = encodeRecord(record);
      const seq = ++this.seq;
      this.inFlight.set(key, { seq, record });
      const headers = { [ORIGIN]: this.options.replica, [SEQ]: String(seq) };
      this.queue.push({ message: { key, value, headers }, bytes: key.length + (value?.length ?? 0) + 64 });
    }
    this.kick();
  }

  /** Forgets what is queued (this replica no longer leads: what it read is no longer the truth). */
  dropQueued(): void {
    this.queue = [];
    this.epoch += 1;
    this.inFlight.clear();
  }

  /** Resolves once the queue is sent, or after `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length > 0 && Date.now() < deadline) {
      await Promise.race([this.draining, new Promise((resolve) => setTimeout(resolve, 50).unref())]);
    }
  }

  /**
   * Resolves true once this replica has read the topic up to its end as of now (so its state of
   * the topic is complete), false after `timeoutMs` or as soon as `keepWaiting` says so.
   */
  async caughtUp(timeoutMs: number, keepWaiting: () => boolean): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    let ends: { partition: number; high: number; low: number }[] | undefined;
    let warned = false;
    while (Date.now() < deadline && keepWaiting() && !this.stopped) {
      try {
        ends ??= await this.endOffsets();
        if (ends.every((p) => p.high <= p.low || (this.positions.get(p.partition) ?? p.low) >= p.high)) return true;
      } catch (error) {
        if (!warned) {
          this.options.logger.warn(
            { err: error, topic: this.options.topic },
            'reading the catalog topic end offsets failed; retrying',
          );
        }
        warned = true;
      }
      await new Promise((resolve) => setTimeout(resolve, 100).unref());
    }
    return false;
  }

  /** Closes the consumer and the producer within a few seconds; what is still queued is dropped (flush first). */
  async stop(): Promise<void> {
    this.stopped = true;
    const bounded = (work: Promise<unknown> | undefined, ms: number) =>
      Promise.race([work?.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
    await this.consumer.stop();
    this.dropQueued();
    await bounded(this.draining, 1_000);
    await bounded(this.producer.disconnect(), 1_000);
  }

  private ready(): Promise<void> {
    this.producerReady ??= ensureTopic(this.options.kafka, this.options.topic, 1, CATALOG_TOPIC_CONFIGS)
      .then(() => this.producer.connect())
      .catch((error: unknown) => {
        this.producerReady = undefined;
        throw error;
      });
    return this.producerReady;
  }

  private kick(): void {
    if (this.draining || this.stopped) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      // Records queued between the loop's end and now.
      if (this.queue.length > 0) this.kick();
    });
  }

  /** The one send loop: per-key order is the queue's order, so one chunk is in flight at a time. */
  private async drain(): Promise<void> {
    let failures = 0;
    while (this.queue.length > 0 && !this.stopped) {
      const epoch = this.epoch;
      let bytes = 0;
      let count = 0;
      while (
        count < this.queue.length &&
        count < CHUNK_MESSAGES &&
        (count === 0 || bytes + this.queue[count]!.bytes <= CHUNK_BYTES)
      ) {
        bytes += this.queue[count]!.bytes;
        count += 1;
      }
      const chunk = this.queue.slice(0, count).map((p) => p.message);
      try {
        await this.ready();
        await this.producer.send({ topic: this.options.topic, acks: -1, compression: CompressionTypes.GZIP, messages: chunk });
        if (epoch === this.epoch) this.queue.splice(0, count);
        this.options.onPublished?.(count);
        failures = 0;
      } catch (error) {
        failures += 1;
        if (failures === 1) {
          this.options.logger.warn(
            { err: error, topic: this.options.topic, queued: this.queue.length },
            'publishing to the catalog topic failed; retrying',
          );
        }
        await new Promise((resolve) => setTimeout(resolve, BACKOFF_MS[Math.min(failures - 1, BACKOFF_MS.length - 1)]).unref());
      }
    }
  }

  private async endOffsets(): Promise<{ partition: number; high: number; low: number }[]> {
    const admin = this.options.kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(this.options.topic);
      return offsets.map((o) => ({ partition: o.partition, high: Number(o.high), low: Number(o.low) }));
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  private receive(message: KafkaMessage): void {
    const own = message.headers?.[ORIGIN]?.toString() === this.options.replica;
    const key = message.key?.toString() ?? '';
    const sent = own ? this.inFlight.get(key) : undefined;
    let record: CatalogRecord;
    if (sent && String(sent.seq) === message.headers?.[SEQ]?.toString()) {
      this.inFlight.delete(key);
      record = sent.record;
    } else {
      const decoded = decodeRecord(message.key, message.value);
      if (!decoded.ok) return this.options.onMalformed(`${decoded.reason} (offset ${message.offset})`);
      record = decoded.record;
    }
    try {
      this.options.onRecord(record, own);
    } catch (error) {
      // One record that cannot be applied must not stop the ones after it.
      this.options.logger.error({ err: error, key, offset: message.offset }, 'applying a catalog record failed; skipped');
    }
  }
}
