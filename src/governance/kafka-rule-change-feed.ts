import { Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type Consumer, Kafka, logLevel, type Producer } from 'kafkajs';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { z } from 'zod';
import { ensureTopic } from '../common/kafka-topic.js';
import type { AppConfig } from '../config/app-config.js';
import { LocalRuleChangeFeed, type RuleSetChanged } from './rule-change-feed.js';

/** One message per commit on the rules topic; key = application. */
export const RuleChangeMessage = z.object({
  v: z.literal(1),
  application: z.string().min(1).max(200),
  revision: z.number().int().min(0),
  /** The replica that committed it (it delivered the change locally already). */
  origin: z.string().min(1).max(200),
  at: z.number().int(),
});

const BACKOFF_MS = [500, 1_000, 2_000, 5_000, 10_000];

/**
 * Rule commits shared by every replica through a Kafka topic (`RULES_TOPIC`, default
 * `steward.rules.v1`): a commit is delivered to this replica's listeners at once and produced to
 * the topic; every replica consumes the topic in a consumer group of its own (so each one reads
 * every message) and delivers the other replicas' commits to its listeners. So a rule saved through
 * any replica reaches the agents connected to all of them within milliseconds. Kafka being away
 * only delays that: the agent hub's revision poll (`AGENT_REVISION_POLL_MS`) still finds the
 * revision in the database.
 */
@Injectable()
export class KafkaRuleChangeFeed extends LocalRuleChangeFeed implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly replicaId = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly kafka: Kafka;
  private readonly topic: string;
  private readonly producer: Producer;
  private producerReady?: Promise<void>;
  private consumer?: Consumer;
  private stopped = false;
  private supervisor?: Promise<void>;
  private wake?: () => void;

  constructor(
    config: ConfigService<AppConfig, true>,
    @InjectPinoLogger(KafkaRuleChangeFeed.name) private readonly logger: PinoLogger,
  ) {
    super();
    const kafka = config.get('kafka', { infer: true });
    this.topic = config.get('rules', { infer: true }).topic;
    this.kafka = new Kafka({ clientId: `${kafka.clientId}-rules`, brokers: kafka.brokers, logLevel: logLevel.NOTHING });
    this.producer = this.kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 3 } });
  }

  override publish(change: RuleSetChanged): void {
    super.publish(change);
    const value = JSON.stringify({ v: 1, ...change, origin: this.replicaId, at: Date.now() });
    void this.produce(change.application, value).catch((error: unknown) =>
      this.logger.warn(
        { err: error, ...change },
        'publishing a rule change to Kafka failed; other replicas find it by their revision poll',
      ),
    );
  }

  onApplicationBootstrap(): void {
    this.supervisor = this.consume();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    const bounded = (work: Promise<unknown> | undefined, ms: number) =>
      Promise.race([work?.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
    await bounded(this.consumer?.disconnect(), 3_000);
    await bounded(this.supervisor, 1_000);
    await bounded(this.producer.disconnect(), 1_000);
  }

  private async produce(key: string, value: string): Promise<void> {
    this.producerReady ??= ensureTopic(this.kafka, this.topic, 3)
      .then(() => this.producer.connect())
      .catch((error: unknown) => {
        this.producerReady = undefined;
        throw error;
      });
    await this.producerReady;
    await this.producer.send({ topic: this.topic, acks: -1, messages: [{ key, value }] });
  }

  /** Keeps a consumer running until shutdown, recreating it after any failure. */
  private async consume(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      const consumer = this.kafka.consumer({ groupId: `steward-rules.${this.replicaId}`, allowAutoTopicCreation: false });
      this.consumer = consumer;
      try {
        await ensureTopic(this.kafka, this.topic, 3);
        const ended = new Promise<void>((resolve) => {
          this.wake = resolve;
          consumer.on(consumer.events.CRASH, ({ payload }) => {
            if (!payload.restart) resolve();
          });
        });
        await consumer.connect();
        // Only what is committed from now on: at start, the agent hub reads the current revisions anyway.
        await consumer.subscribe({ topics: [this.topic], fromBeginning: false });
        await consumer.run({ eachMessage: async ({ message }) => this.deliver(message.value) });
        failures = 0;
        await ended;
      } catch (error) {
        if (!this.stopped) this.logger.warn({ err: error }, 'consuming rule changes from Kafka failed; retrying');
        failures += 1;
      }
      await consumer.disconnect().catch(() => undefined);
      if (!this.stopped && failures > 0) await this.sleep(BACKOFF_MS[Math.min(failures - 1, BACKOFF_MS.length - 1)]!);
    }
  }

  private deliver(value: Buffer | null): Promise<void> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value?.toString('utf8') ?? '');
    } catch {
      parsed = undefined;
    }
    const message = RuleChangeMessage.safeParse(parsed);
    if (!message.success) {
      this.logger.warn({ reason: message.error.issues[0]?.message }, 'malformed rule change message skipped');
      return Promise.resolve();
    }
    if (message.data.origin !== this.replicaId)
      super.publish({ application: message.data.application, revision: message.data.revision });
    return Promise.resolve();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => (clearTimeout(timer), resolve());
    });
  }
}
