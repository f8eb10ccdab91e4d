import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { CompressionTypes, type Kafka, type Message, type Producer } from 'kafkajs';
import type { z } from 'zod';
import { ensureTopic, sendSize } from './kafka-topic.js';
import { SupervisedConsumer } from './supervised-consumer.js';

/** This server process among the replicas: stable for its life, unique across restarts. */
export const REPLICA_ID = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;

/**
 * A reader only gets what is produced after it joined, so nothing is worth keeping long: an hour,
 * in segments of ten minutes (the broker deletes whole segments only). At 10,000 agents the agents
 * topic takes ~1 MB/s before compression; a week (the broker's default) would be ~600 GB.
 */
const TOPIC_CONFIGS = { 'retention.ms': String(3_600_000), 'segment.ms': String(600_000) };

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
 * own (so each one gets every message, from the time it joined) and may produce to it. Kafka
 * being away delays messages and never fails the caller.
 */
export class KafkaBroadcast<T> {
  private readonly producer: Producer;
  private producerReady?: Promise<void>;
  private readonly consumer: SupervisedConsumer;

  constructor(private readonly options: KafkaBroadcastOptions<T>) {
    const { kafka, topic, partitions, groupPrefix } = options;
    this.producer = kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 3 } });
    this.consumer = new SupervisedConsumer({
      kafka,
      config: {
        groupId: `${groupPrefix}.${REPLICA_ID}`,
        allowAutoTopicCreation: false,
        // An idle fetch returns within a second (kafkajs waits 5 s by default), and a shutdown
        // waits for the fetch in flight: several such consumers would add seconds to every stop.
        maxWaitTimeInMs: 1_000,
      },
      prepare: () => ensureTopic(kafka, topic, partitions, TOPIC_CONFIGS),
      // What is produced from now on: what came before, the callers learn some other way.
      subscribe: { topics: [topic], fromBeginning: false },
      run: {
        eachMessage: ({ message }) => {
          this.deliver(message.value);
          return Promise.resolve();
        },
      },
      onError: options.onConsumerError,
    });
  }

  start(): void {
    this.consumer.start();
  }

  /** Produces `messages` (each a `key` and a `value` of the schema's input), in order, in as few requests as the broker takes. */
  async send(messages: { key: string; value: T }[]): Promise<void> {
    const { kafka, topic, partitions } = this.options;
    this.producerReady ??= ensureTopic(kafka, topic, partitions, TOPIC_CONFIGS)
      .then(() => this.producer.connect())
      .catch((error: unknown) => {
        this.producerReady = undefined;
        throw error;
      });
    await this.producerReady;
    const encoded = messages.map(({ key, value }) => ({ key, value: JSON.stringify(value) }));
    while (encoded.length > 0) {
      const chunk: Message[] = encoded.splice(0, sendSize(encoded, encoded.length));
      await this.producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages: chunk });
    }
  }

  async stop(): Promise<void> {
    await this.consumer.stop();
    await Promise.race([this.producer.disconnect().catch(() => undefined), new Promise((r) => setTimeout(r, 1_000).unref())]);
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
}
