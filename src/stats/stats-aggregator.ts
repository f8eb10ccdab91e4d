import { type Consumer, type EachBatchPayload, Kafka, type KafkaMessage, logLevel } from 'kafkajs';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { LiveSeconds } from './live-seconds.js';
import { type FactDoc, HOUR, MINUTE } from './rollup.js';
import { parseStatsMessage, toFact, toRecords } from './stats-message.js';
import type { CallRecordDoc, DirtyMark, StatsStore, WriteStatus } from './stats-store.js';

export const DEFAULT_STATS_TOPIC = 'steward.stats.v1';
export const STATS_GROUP_ID = 'steward-stats-aggregator';
export const STATS_PARTITIONS = 6;

/**
 * One consumer group per topic: the default topic's group is `steward-stats-aggregator`; another
 * topic (tests, a second estate on the same cluster) gets its own group, so members subscribed to
 * different topics never share (and mis-assign) one group.
 */
export function groupIdFor(topic: string): string {
  return topic === DEFAULT_STATS_TOPIC ? STATS_GROUP_ID : `${STATS_GROUP_ID}.${topic}`;
}

/** Creates the topic when missing (brokers may not auto-create); true when it was created. */
export async function ensureStatsTopic(kafka: Kafka, topic: string, partitions = STATS_PARTITIONS): Promise<boolean> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = await admin.listTopics();
    if (existing.includes(topic)) return false;
    try {
      return await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true });
    } catch (error) {
      // Another aggregator created it between the list and the create.
      if ((error as { type?: string }).type === 'TOPIC_ALREADY_EXISTS') return false;
      throw error;
    }
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

export interface AggregatorLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface StatsAggregatorOptions {
  brokers: string[];
  clientId: string;
  topic: string;
  store: StatsStore;
  logger: AggregatorLogger;
  /** Receives every newly stored fact (never a redelivered one). */
  live?: LiveSeconds;
  /** Where the aggregator's metrics go (the server's registry, or the standalone process's). */
  registry?: Registry;
  groupId?: string;
  partitions?: number;
  /** Messages written per bulk operation (a Kafka batch is cut in chunks of this size). */
  chunkSize?: number;
  /** How often dirty windows are recomputed. */
  rollupIntervalMs?: number;
  /** A window still open (it may get more facts soon) is recomputed at most this often. */
  openWindowMs?: number;
  cleanupIntervalMs?: number;
}

export type Outcome = 'counted' | 'duplicate' | 'malformed' | 'late' | 'rejected';

const BACKOFF_MS = [200, 500, 1_000, 2_000, 5_000, 10_000];
/** A mark no aggregator owning its partition took care of for this long is anyone's. */
const ORPHAN_MS = 30_000;
/** A window is closed (no more recomputation throttling) this long after its end. */
const CLOSE_GRACE_MS = 2_000;

/**
 * The stats aggregator: a member of the consumer group on the stats topic. Each Kafka batch is
 * cut in chunks; a chunk's facts and records are inserted with their idempotency keys, the minute
 * windows they touch are marked dirty, and only then is the chunk's last offset resolved and
 * committed. A timer recomputes dirty windows from their facts. Kafka or MongoDB being away makes
 * it wait and retry, never throw out of its own loop.
 */
export class StatsAggregator {
  readonly groupId: string;
  private readonly messages: Counter<'outcome'>;
  private readonly rollups: Counter<'resolution'>;
  private readonly agentDropped: Counter<'kind'>;
  private readonly chunkSize: number;
  private stopped = false;
  private readonly stopping = new AbortController();
  private supervisor?: Promise<void>;
  private consumer?: Consumer;
  private endSession?: () => void;
  private owned = new Set<number>();
  private rollupTimer?: NodeJS.Timeout;
  private cleanupTimer?: NodeJS.Timeout;
  private rolling?: Promise<void>;
  private readonly lastComputed = new Map<string, number>();
  private indexesReady = false;
  private readonly warned = new Map<string, number>();
  /** Totals since start, for logs and tests. */
  readonly totals: Record<Outcome, number> = { counted: 0, duplicate: 0, malformed: 0, late: 0, rejected: 0 };

  constructor(private readonly options: StatsAggregatorOptions) {
    this.groupId = options.groupId ?? groupIdFor(options.topic);
    this.chunkSize = options.chunkSize ?? 500;
    const registers = options.registry ? [options.registry] : [];
    this.messages = new Counter({
      name: 'steward_stats_messages_total',
      help: 'Messages the stats aggregator consumed, by outcome: counted, duplicate (already stored), malformed, late (past the facts horizon), rejected (refused by the database).',
      labelNames: ['outcome'] as const,
      registers,
    });
    for (const outcome of Object.keys(this.totals)) this.messages.inc({ outcome }, 0);
    this.rollups = new Counter({
      name: 'steward_stats_rollups_total',
      help: 'Windows the stats aggregator recomputed from their facts, by resolution.',
      labelNames: ['resolution'] as const,
      registers,
    });
    this.agentDropped = new Counter({
      name: 'steward_stats_agent_dropped_total',
      help: 'Frames agents reported dropping (buffer full while disconnected), from newly stored frames.',
      labelNames: ['kind'] as const,
      registers,
    });
    const owned = () => this.owned.size;
    new Gauge({
      name: 'steward_stats_aggregator_partitions',
      help: 'Partitions of the stats topic this aggregator currently owns.',
      registers,
      collect() {
        this.set(owned());
      },
    });
  }

  start(): void {
    if (this.supervisor) return;
    this.supervisor = this.supervise();
    this.rollupTimer = setInterval(() => void this.rollupTick(), this.options.rollupIntervalMs ?? 1_000);
    this.cleanupTimer = setInterval(() => void this.cleanup(), this.options.cleanupIntervalMs ?? 60_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    clearInterval(this.rollupTimer);
    clearInterval(this.cleanupTimer);
    this.endSession?.();
    await this.supervisor;
    await this.rolling;
  }

  /** Recomputes what is dirty now (the timer does this; tests and shutdown may call it). */
  rollupNow(): Promise<void> {
    this.rolling ??= this.rollupDue().finally(() => (this.rolling = undefined));
    return this.rolling;
  }

  // ---- consuming -------------------------------------------------------------------------------

  private async supervise(): Promise<void> {
    const { brokers, clientId, topic, logger } = this.options;
    let failures = 0;
    while (!this.stopped) {
      const kafka = new Kafka({ clientId: `${clientId}-stats-aggregator`, brokers, logLevel: logLevel.NOTHING });
      let consumer: Consumer | undefined;
      try {
        if (!this.indexesReady) void this.ensureIndexes();
        await ensureStatsTopic(kafka, topic, this.options.partitions ?? STATS_PARTITIONS);
        consumer = kafka.consumer({
          groupId: this.groupId,
          allowAutoTopicCreation: false,
          sessionTimeout: 30_000,
          heartbeatInterval: 3_000,
          maxBytesPerPartition: 4 * 1_048_576,
          retry: { retries: 8 },
        });
        this.consumer = consumer;
        const session = new Promise<void>((resolve) => {
          this.endSession = resolve;
          consumer!.on(consumer!.events.CRASH, ({ payload }) => {
            this.warn('crash', { err: payload.error, restart: payload.restart }, 'stats consumer crashed');
            if (!payload.restart) resolve();
          });
        });
        consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
          this.owned = new Set(payload.memberAssignment[topic] ?? []);
          logger.info({ topic, partitions: [...this.owned] }, 'stats aggregator joined its consumer group');
        });
        await consumer.connect();
        await consumer.subscribe({ topics: [topic], fromBeginning: true });
        await consumer.run({
          eachBatchAutoResolve: false,
          autoCommit: true,
          autoCommitThreshold: 1,
          partitionsConsumedConcurrently: 3,
          eachBatch: (payload) => this.eachBatch(payload),
        });
        failures = 0;
        if (!this.stopped) await session;
      } catch (error) {
        if (!this.stopped) this.warn('kafka', { err: error, topic }, 'stats aggregator cannot consume; retrying');
        failures += 1;
      }
      this.owned = new Set();
      this.consumer = undefined;
      // Leaves the group: the partitions go to the other members at once; resolved offsets are committed.
      await consumer?.disconnect().catch(() => undefined);
      if (!this.stopped && failures > 0) await this.sleep(BACKOFF_MS[Math.min(failures - 1, BACKOFF_MS.length - 1)]!);
    }
  }

  private async eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const heartbeat = () => payload.heartbeat();
    const isRunning = () => payload.isRunning();
    const isStale = () => payload.isStale();
    for (let i = 0; i < batch.messages.length; i += this.chunkSize) {
      const chunk = batch.messages.slice(i, i + this.chunkSize);
      let failures = 0;
      for (;;) {
        if (!isRunning() || isStale() || this.stopped) return;
        try {
          await this.process(chunk, batch.partition);
          break;
        } catch (error) {
          if (failures === 0)
            this.warn('mongo', { err: error, partition: batch.partition }, 'storing stats failed; retrying the chunk');
          await this.sleep(BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)]!);
          failures += 1;
          // Stays in the group while waiting; a rebalance makes this throw, and kafkajs redelivers the chunk.
          await heartbeat();
        }
      }
      payload.resolveOffset(chunk[chunk.length - 1]!.offset);
      await payload.commitOffsetsIfNecessary();
      await heartbeat();
    }
  }

  /** Stores one chunk; throws (writing nothing twice when retried) if the database fails. */
  async process(messages: readonly KafkaMessage[], partition: number, now = Date.now()): Promise<Outcome[]> {
    const { store } = this.options;
    const outcomes: Outcome[] = Array.from({ length: messages.length }, () => 'counted');
    const facts: { index: number; doc: FactDoc }[] = [];
    const records: { index: number; docs: CallRecordDoc[]; dropped: number }[] = [];
    const lateBefore = store.lateBefore(now);
    const recordsBefore = now - store.retention.records * 1_000;
    messages.forEach((message, index) => {
      const parsed = parseStatsMessage(message.value);
      if (!parsed.ok) {
        outcomes[index] = 'malformed';
        this.warn('malformed', { partition, offset: message.offset, reason: parsed.reason }, 'malformed stats message skipped');
        return;
      }
      const value = parsed.message;
      if (value.frame.type === 'stats') {
        if (value.frame.second < lateBefore) outcomes[index] = 'late';
        else facts.push({ index, doc: toFact({ ...value, frame: value.frame }) });
      } else {
        const docs = toRecords({ ...value, frame: value.frame }).filter((r) => r.at >= recordsBefore);
        if (docs.length === 0 && value.frame.records.length > 0) outcomes[index] = 'late';
        else records.push({ index, docs, dropped: value.frame.dropped });
      }
    });

    const rejected = (id: string, reason: string) =>
      this.warn('rejected', { partition, id, reason }, 'the database refused a stats document; skipped');
    const factStatus = await store.insertFacts(
      facts.map((f) => f.doc),
      rejected,
    );
    const recordStatus = await store.insertRecords(
      records.flatMap((r) => r.docs),
      rejected,
    );
    // Windows of every accepted fact, new or already stored: a crash may have come between a first
    // delivery's insert and its mark, so a redelivery marks again.
    const windows = new Map<string, { application: string; start: number }>();
    facts.forEach(({ doc }, i) => {
      if (factStatus[i] !== 'rejected')
        windows.set(`${doc.application}:${doc.minute}`, { application: doc.application, start: doc.minute });
    });
    await store.markDirty('m', windows.values(), partition);

    // Everything is stored: count, and tell the live view about new facts.
    facts.forEach(({ index, doc }, i) => {
      outcomes[index] = statusOutcome(factStatus[i]!);
      if (factStatus[i] === 'inserted') {
        if (doc.dropped > 0) this.agentDropped.inc({ kind: 'stats' }, doc.dropped);
        this.options.live?.add(doc, now);
      }
    });
    let at = 0;
    for (const { index, docs, dropped } of records) {
      const statuses = recordStatus.slice(at, at + docs.length);
      at += docs.length;
      if (statuses.length > 0) {
        outcomes[index] = statuses.includes('inserted')
          ? 'counted'
          : statuses.every((s) => s === 'duplicate')
            ? 'duplicate'
            : 'rejected';
      }
      if (outcomes[index] === 'counted' && dropped > 0) this.agentDropped.inc({ kind: 'records' }, dropped);
    }
    for (const outcome of outcomes) {
      this.totals[outcome] += 1;
      this.messages.inc({ outcome });
    }
    return outcomes;
  }

  // ---- rollups and retention -------------------------------------------------------------------

  private rollupTick(): void {
    if (this.rolling) return;
    void this.rollupNow();
  }

  private async rollupDue(): Promise<void> {
    try {
      const nowMs = Date.now();
      await this.recomputeDue('m', nowMs);
      // The hours those minutes marked, if due, without waiting for the next tick.
      await this.recomputeDue('h', nowMs);
      for (const [id, at] of this.lastComputed) if (nowMs - at > 2 * HOUR * 1_000) this.lastComputed.delete(id);
    } catch (error) {
      this.warn('rollup', { err: error }, 'recomputing stats windows failed; retrying');
    }
  }

  /** Due marks of a kind, one recomputation (one read) per application. */
  private async recomputeDue(kind: 'm' | 'h', nowMs: number): Promise<void> {
    const { store, logger } = this.options;
    const byApplication = new Map<string, DirtyMark[]>();
    for (const mark of await store.pendingMarks()) {
      if (mark.kind !== kind || !this.due(mark, nowMs)) continue;
      const list = byApplication.get(mark.application) ?? [];
      list.push(mark);
      byApplication.set(mark.application, list);
    }
    for (const marks of byApplication.values()) {
      if (this.stopped) return;
      await store.recompute(marks, (mark, error) =>
        logger.error({ err: error, window: mark._id }, 'a stats window cannot be written; its mark is dropped'),
      );
      for (const mark of marks) this.lastComputed.set(mark._id, nowMs);
      this.rollups.inc({ resolution: kind === 'm' ? '1m' : '1h' }, marks.length);
    }
  }

  /** Owned (or orphaned), and closed or not recomputed lately. */
  private due(mark: DirtyMark, nowMs: number): boolean {
    if (!this.owned.has(mark.partition) && nowMs - mark.markedAt < ORPHAN_MS) return false;
    const end = (mark.start + (mark.kind === 'm' ? MINUTE : HOUR)) * 1_000;
    if (end + CLOSE_GRACE_MS <= nowMs) return true;
    return nowMs - (this.lastComputed.get(mark._id) ?? 0) >= (this.options.openWindowMs ?? 5_000);
  }

  private async cleanup(): Promise<void> {
    try {
      const deleted = await this.options.store.cleanup();
      if (Object.values(deleted).some((n) => n > 0)) this.options.logger.info({ deleted }, 'stats past retention deleted');
    } catch (error) {
      this.warn('cleanup', { err: error }, 'stats retention cleanup failed; next round retries');
    }
  }

  private async ensureIndexes(): Promise<void> {
    try {
      await this.options.store.ensureIndexes();
      this.indexesReady = true;
    } catch (error) {
      this.warn('indexes', { err: error }, 'creating stats indexes failed; retrying on the next start');
    }
  }

  // ---- helpers ---------------------------------------------------------------------------------

  /** Logs a warning of a kind at most once a minute. */
  private warn(kind: string, obj: object, msg: string): void {
    const now = Date.now();
    if (now - (this.warned.get(kind) ?? 0) < 60_000) return;
    this.warned.set(kind, now);
    this.options.logger.warn(obj, msg);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopping.signal.aborted) return resolve();
      const timer = setTimeout(resolve, ms);
      this.stopping.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
  }
}

function statusOutcome(status: WriteStatus): Outcome {
  return status === 'inserted' ? 'counted' : status === 'duplicate' ? 'duplicate' : 'rejected';
}
