import { Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { Kafka, logLevel } from 'kafkajs';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { z } from 'zod';
import { KafkaBroadcast, REPLICA_ID } from '../common/kafka-broadcast.js';
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

/**
 * Rule commits shared by every replica through a Kafka topic (`RULES_TOPIC`, default
 * `steward.rules.v1`): a commit is delivered to this replica's listeners at once and produced to
 * the topic; every replica reads every message of the topic and delivers the other replicas'
 * commits to its listeners. So a rule saved through any replica reaches the agents connected to
 * all of them within milliseconds. Kafka being away only delays that: the agent hub's revision
 * poll (`AGENT_REVISION_POLL_MS`) still finds the revision in the database, and at start the hub
 * reads the current revisions anyway.
 */
@Injectable()
export class KafkaRuleChangeFeed extends LocalRuleChangeFeed implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly broadcast: KafkaBroadcast<z.output<typeof RuleChangeMessage>>;

  constructor(
    config: ConfigService<AppConfig, true>,
    @InjectPinoLogger(KafkaRuleChangeFeed.name) private readonly logger: PinoLogger,
  ) {
    super();
    const kafka = config.get('kafka', { infer: true });
    this.broadcast = new KafkaBroadcast({
      kafka: new Kafka({ clientId: `${kafka.clientId}-rules`, brokers: kafka.brokers, logLevel: logLevel.NOTHING }),
      topic: config.get('rules', { infer: true }).topic,
      partitions: 3,
      groupPrefix: 'steward-rules',
      schema: RuleChangeMessage,
      onMessage: (message) => {
        if (message.origin !== REPLICA_ID) super.publish({ application: message.application, revision: message.revision });
      },
      onMalformed: (reason) => this.logger.warn({ reason }, 'malformed rule change message skipped'),
      onConsumerError: (error) => this.logger.warn({ err: error }, 'consuming rule changes from Kafka failed; retrying'),
    });
  }

  override publish(change: RuleSetChanged): void {
    super.publish(change);
    const value = { v: 1 as const, ...change, origin: REPLICA_ID, at: Date.now() };
    void this.broadcast
      .send([{ key: change.application, value }])
      .catch((error: unknown) =>
        this.logger.warn(
          { err: error, ...change },
          'publishing a rule change to Kafka failed; other replicas find it by their revision poll',
        ),
      );
  }

  onApplicationBootstrap(): void {
    this.broadcast.start();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.broadcast.stop();
  }
}
