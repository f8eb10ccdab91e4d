import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type Consumer, type Kafka, type Message, type Producer } from 'kafkajs';
import type { z } from 'zod';
import { ensureTopic } from './kafka-topic.js';

/** This server process among the replicas: stable for its life, unique across restarts. */
export const REPLICA_ID = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;

const BACKOFF_MS = [500, 1_000, 2_000, 5_000, 10_000];

export interface KafkaBroadcastOptions<T> {
  kafka: Kafka;
  topic: string;
  partitions: number;
  /** Prefix of this replica's own consumer group (the replica id follows). */
  groupPrefix: string;
  /** The one shape of the topic's messages (JSON). */
  schema: z.ZodType<T>;
  /** Every valid message of the topic produced while this replica runs (its errors are its own). */
  onMessage: (message: T) => void;
  /** A message that is not JSON of `schema`: skipped. */
  onMalformed: (reason: string) => void;
  /** The consumer failed; it is recreated after a backoff. */
  onConsumerError: (error: unknown) => void;
}

/**
 * A Kafka topic every replica reads whole: each replica consumes it in a consumer group of its
 * own (so each one gets every message, from the time it joined) and may produce to it. The
 * consumer is recreated after any failure, with backoff, until `stop`; Kafka being away delays
 * messages and never fails the caller.
 */
export class KafkaBroadcast<T> {
  private readonly producer: Producer;
  private producerReady?: Promise<void>;
  private consumer?: Consumer;
  private stopped = false;
  private supervisor?: Promise<void>;
  private wake?: () => void;

  constructor(private readonly options: KafkaBroadcastOptions<T>) {
    this.producer = options.kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 3 } });
  }

  start(): void {
    this.supervisor ??= this.consume();
  }

  /** Produces `messages` (each a `key` and a `value` of the schema's input), in one request. */
  async send(messages: { key: string; value: T }[]): Promise<void> {
    const { kafka, topic, partitions } = this.options;
    this.producerReady ??= ensureTopic(kafka, topic, partitions)
      .then(() => this.producer.connect())
      .catch((error: unknown) => {
        this.producerReady = undefined;
        throw error;
      });
    await this.producerReady;
    const encoded: Message[] = messages.map(({ key, value }) => ({ key, value: JSON.stringify(value) }));
    await this.producer.send({ topic, acks: -1, messages: encoded });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    const bounded = (work: Promise<unknown> | undefined, ms: number) =>
      Promise.race([work?.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
    await bounded(this.consumer?.disconnect(), 3_000);
    await bounded(this.supervisor, 1_000);
    await bounded(this.producer.disconnect(), 1_000);
  }

  /** Keeps a consumer running until stopped, recreating it after any failure. */
  private async consume(): Promise<void> {
    const { kafka, topic, partitions, groupPrefix, onConsumerError } = this.options;
    let failures = 0;
    while (!this.stopped) {
      const consumer = kafka.consumer({ groupId: `${groupPrefix}.${REPLICA_ID}`, allowAutoTopicCreation: false });
      this.consumer = consumer;
      try {
        await ensureTopic(kafka, topic, partitions);
        const ended = new Promise<void>((resolve) => {
          this.wake = resolve;
          consumer.on(consumer.events.CRASH, ({ payload }) => {
            if (!payload.restart) resolve();
          });
        });
        await consumer.connect();
        // What is produced from now on: what came before, the callers learn some other way.
        await consumer.subscribe({ topics: [topic], fromBeginning: false });
        await consumer.run({
          eachMessage: ({ message }) => {
            this.deliver(message.value);
            return Promise.resolve();
          },
        });
        failures = 0;
        await ended;
      } catch (error) {
        if (!this.stopped) onConsumerError(error);
        failures += 1;
      }
      await consumer.disconnect().catch(() => undefined);
      if (!this.stopped && failures > 0) await this.sleep(BACKOFF_MS[Math.min(failures - 1, BACKOFF_MS.length - 1)]!);
    }
  }

  private deliver(value: Buffer | null): void {
    let json: unknown;
    try {
      json = JSON.parse(value?.toString('utf8') ?? '');
    } catch {
      this.options.onMalformed('not JSON');
      return;
    }
    const parsed = this.options.schema.safeParse(json);
    if (parsed.success) this.options.onMessage(parsed.data);
    else this.options.onMalformed(parsed.error.issues[0]?.message ?? 'invalid');
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => (clearTimeout(timer), resolve());
    });
  }
}
