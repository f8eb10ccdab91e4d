import { Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { Kafka, logLevel } from 'kafkajs';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { KafkaBroadcast, REPLICA_ID } from '../common/kafka-broadcast.js';
import type { AppConfig } from '../config/app-config.js';
import type { AgentRecord } from './agent-directory.js';
import { AgentHub } from './agent-hub.js';
import { AgentStateMessage, REFRESH_MS } from './cluster-agent-directory.js';

/** Changes go out this long after the first of a burst, together. */
const FLUSH_MS = 250;
/** Records per message: far below Kafka's 1 MB message limit even with many breakers per agent. */
const BATCH = 100;

/**
 * Shares this replica's agent directory with the other replicas through a Kafka topic
 * (`AGENTS_TOPIC`, default `steward.agents.v1`) and feeds theirs into the hub's cluster view: the
 * records of agents that connected, disconnected, ACKed or NACKed go out within FLUSH_MS, and all
 * records every REFRESH_MS (5 s). Another replica's records expire 4 × REFRESH_MS after it last
 * repeated them, so a replica that died leaves the view within 20 s (its agents show at once where they
 * reconnected: the newer session wins). A replica that starts knows the others' agents after one
 * refresh. Kafka being away leaves each replica with its own agents only; nothing else waits on it.
 */
@Injectable()
export class AgentDirectoryExchange implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly broadcast: KafkaBroadcast<AgentStateMessage>;
  private readonly dirty = new Set<string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private flushTimer?: NodeJS.Timeout;
  private sending = false;
  private failing = false;
  private unsubscribe?: () => void;

  constructor(
    config: ConfigService<AppConfig, true>,
    private readonly hub: AgentHub,
    @InjectPinoLogger(AgentDirectoryExchange.name) private readonly logger: PinoLogger,
  ) {
    const kafka = config.get('kafka', { infer: true });
    this.broadcast = new KafkaBroadcast({
      kafka: new Kafka({ clientId: `${kafka.clientId}-agents`, brokers: kafka.brokers, logLevel: logLevel.NOTHING }),
      topic: config.get('agents', { infer: true }).topic,
      partitions: 3,
      groupPrefix: 'steward-agents',
      schema: AgentStateMessage,
      onMessage: (message) => this.hub.cluster.apply(message),
      onMalformed: (reason) => this.logger.warn({ reason }, 'malformed agent state message skipped'),
      onConsumerError: (error) =>
        this.logger.warn({ err: error }, "consuming other replicas' agents from Kafka failed; retrying"),
    });
  }

  onApplicationBootstrap(): void {
    this.unsubscribe = this.hub.directory.subscribe((event) => {
      this.dirty.add(event.instanceId);
      this.flushTimer ??= setTimeout(() => void this.flush(), FLUSH_MS);
    });
    this.broadcast.start();
    this.timers.push(
      setInterval(() => void this.share([...this.hub.directory.all()]), REFRESH_MS),
      setInterval(() => this.hub.cluster.expire(), 1_000),
    );
    for (const timer of this.timers) timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.unsubscribe?.();
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.flushTimer);
    // The agents were told to go by now: the others learn it at once rather than at expiry.
    await this.share([...this.hub.directory.all()]);
    await this.broadcast.stop();
  }

  private async flush(): Promise<void> {
    this.flushTimer = undefined;
    if (this.sending) {
      this.flushTimer = setTimeout(() => void this.flush(), FLUSH_MS);
      return;
    }
    const records: AgentRecord[] = [];
    for (const id of this.dirty) {
      const record = this.hub.directory.get(id);
      if (record) records.push(record);
    }
    this.dirty.clear();
    await this.share(records);
  }

  /** Sends `records` in batches; one send at a time (a change waits for the refresh when Kafka is slow). */
  private async share(records: AgentRecord[]): Promise<void> {
    if (this.sending || records.length === 0) return;
    this.sending = true;
    try {
      const at = Date.now();
      const messages: { key: string; value: AgentStateMessage }[] = [];
      for (let i = 0; i < records.length; i += BATCH)
        messages.push({ key: REPLICA_ID, value: { v: 1, replica: REPLICA_ID, at, agents: records.slice(i, i + BATCH) } });
      await this.broadcast.send(messages);
      if (this.failing) this.logger.info('sharing agent state through Kafka works again');
      this.failing = false;
    } catch (error) {
      if (!this.failing)
        this.logger.warn(
          { err: error },
          "sharing this replica's agents through Kafka failed; other replicas see them when it works again",
        );
      this.failing = true;
    } finally {
      this.sending = false;
    }
  }
}
