import { type Consumer, type EachBatchPayload, Kafka, type KafkaMessage, logLevel } from 'kafkajs';
import { Counter, Gauge, type Registry } from 'prom-client';
import { ensureTopic } from '../common/kafka-topic.js';
import type { LiveSeconds } from './live-seconds.js';
import { type FactDoc, HOUR, MINUTE, type RollupDoc, rollupId, windowStart } from './rollup.js';
import { parseStatsMessage, toFact, toRecords } from './stats-message.js';
import type { CallRecordDoc, StatsStore } from './stats-store.js';
import { type HourWindow, type MinuteWindow, WindowBook } from './window-book.js';

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

/** Creates the stats topic when missing (brokers may not auto-create); true when it was created. */
export function ensureStatsTopic(kafka: Kafka, topic: string, partitions = STATS_PARTITIONS): Promise<boolean> {
  return ensureTopic(kafka, topic, partitions);
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
  /** How often changed minute windows are written, per partition. */
  flushIntervalMs?: number;
  /** How often hour windows are written and the offsets committed, per partition. */
  commitIntervalMs?: number;
  /** A written window nothing touched for this long, and that ended before it, leaves memory. */
  idleMs?: number;
  cleanupIntervalMs?: number;
}

export type Outcome = 'counted' | 'duplicate' | 'malformed' | 'late' | 'rejected';

const BACKOFF_MS = [200, 500, 1_000, 2_000, 5_000, 10_000];

/** Where a partition stands: the last offset merged into memory, the last one committed. */
interface PartitionState {
  merged?: string;
  committed?: string;
  lastFlush: number;
  lastCommit: number;
  /** Flushes of a partition run one after the other. */
  chain: Promise<void>;
  flushing: boolean;
}

/**
 * The stats aggregator: a member of the consumer group on the stats topic. Each Kafka batch is
 * cut in chunks; a chunk's facts and records are inserted with their idempotency keys and its
 * frames merged into the minute and hour windows held in memory (`WindowBook`), each frame once.
 * Every second (per partition) the changed windows are written whole, and only then is the
 * offset of the last merged message committed: a crash loses nothing that Kafka will not deliver
 * again, and what it delivers again is recognised by the windows' frame lists. Kafka or MongoDB
 * being away makes it wait and retry, never throw out of its own loop.
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
  /** Set from the moment kafkajs learns of a rebalance until the group is joined again: no writes. */
  private rebalancing = false;
  private readonly partitions = new Map<number, PartitionState>();
  readonly book = new WindowBook();
  private flushTimer?: NodeJS.Timeout;
  private cleanupTimer?: NodeJS.Timeout;
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
      help: 'Windows the stats aggregator wrote, by resolution.',
      labelNames: ['resolution'] as const,
      registers,
    });
    this.agentDropped = new Counter({
      name: 'steward_stats_agent_dropped_total',
      help: 'Frames agents reported dropping (buffer full while disconnected), from newly stored frames.',
      labelNames: ['kind'] as const,
      registers,
    });
    const owned = () => this.owned;
    new Gauge({
      name: 'steward_stats_aggregator_partitions',
      help: 'Partitions of the stats topic this aggregator currently owns: 1 per owned partition (sum: how many).',
      labelNames: ['partition'] as const,
      registers,
      collect() {
        this.reset();
        for (const partition of owned()) this.set({ partition: String(partition) }, 1);
      },
    });
  }

  start(): void {
    if (this.supervisor) return;
    this.supervisor = this.supervise();
    this.flushTimer = setInterval(() => this.flushTick(), Math.min(this.flushInterval(), 1_000));
    this.cleanupTimer = setInterval(() => void this.cleanup(), this.options.cleanupIntervalMs ?? 60_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    clearInterval(this.flushTimer);
    clearInterval(this.cleanupTimer);
    this.endSession?.();
    await this.supervisor;
  }

  /** Writes every owned partition's changed windows and commits. */
  async flushNow(): Promise<void> {
    await Promise.all([...this.owned].map((partition) => this.flush(partition, true)));
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
        consumer.on(consumer.events.REBALANCING, () => {
          this.rebalancing = true;
        });
        consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
          this.assign(new Set(payload.memberAssignment[topic] ?? []));
          this.rebalancing = false;
          logger.info({ topic, partitions: [...this.owned] }, 'stats aggregator joined its consumer group');
        });
        await consumer.connect();
        await consumer.subscribe({ topics: [topic], fromBeginning: true });
        await consumer.run({
          // Resolved offsets move the fetch on; commits wait until the windows are written.
          eachBatchAutoResolve: false,
          autoCommit: false,
          partitionsConsumedConcurrently: 3,
          eachBatch: (payload) => this.eachBatch(payload),
        });
        failures = 0;
        if (!this.stopped) await session;
      } catch (error) {
        if (!this.stopped) this.warn('kafka', { err: error, topic }, 'stats aggregator cannot consume; retrying');
        failures += 1;
      }
      // What is merged is written and committed while still a member, so the next owner starts there.
      if (consumer && this.stopped)
        await this.flushNow().catch((error: unknown) => this.warn('flush', { err: error }, 'final stats flush failed'));
      this.assign(new Set());
      this.consumer = undefined;
      // Leaves the group: the partitions go to the other members at once.
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
      const last = chunk[chunk.length - 1]!.offset;
      this.partitionState(batch.partition).merged = last;
      // The flush timer writes what was merged; consuming goes on meanwhile.
      payload.resolveOffset(last);
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
    const accepted = facts.filter((_, i) => factStatus[i] !== 'rejected');
    for (const [i, { index }] of facts.entries()) if (factStatus[i] === 'rejected') outcomes[index] = 'rejected';
    await this.load(
      accepted.map((f) => f.doc),
      partition,
      now,
    );

    // Everything is stored or held: merge (each frame once), count, tell the live view.
    for (const { index, doc } of accepted) {
      outcomes[index] = this.book.merge(doc, runOf(doc), now);
      if (outcomes[index] === 'counted') {
        if (doc.dropped > 0) this.agentDropped.inc({ kind: 'stats' }, doc.dropped);
        this.options.live?.add(doc, now);
      }
    }
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

  // ---- windows -----------------------------------------------------------------------------------

  /**
   * Reads the windows these facts need and memory lacks, by `_id`: their minutes, their hours, and
   * — only for an hour that disagrees with one of its minutes — the hour's other minutes.
   */
  private async load(facts: readonly FactDoc[], partition: number, nowMs: number): Promise<void> {
    const { store } = this.options;
    const byId = (ids: readonly string[], windowOf: (fact: FactDoc) => string) => {
      const wanted = new Set(ids);
      const out = new Map<string, FactDoc>();
      for (const fact of facts) if (wanted.has(windowOf(fact))) out.set(windowOf(fact), fact);
      return out;
    };
    const minuteIds = this.book.missingMinutes(facts);
    if (minuteIds.length > 0) {
      const stored = await store.loadMinutes(minuteIds);
      for (const [id, fact] of byId(minuteIds, (f) => rollupId(f.application, f.minute)))
        this.book.installMinute(id, stored.get(id) ?? null, fact, partition, nowMs);
    }
    const hourIds = this.book.missingHours(facts);
    if (hourIds.length > 0) {
      const stored = await store.loadHours(hourIds);
      for (const [id, fact] of byId(hourIds, (f) => rollupId(f.application, windowStart(f.minute, HOUR))))
        this.book.installHour(id, stored.get(id) ?? null, fact, partition, nowMs);
    }
    const stale = this.book.staleHours();
    if (stale.length > 0) {
      const stored = await store.loadMinutes(stale.flatMap((s) => s.unheld));
      for (const { hour } of stale) this.book.rebuildHour(hour, stored);
      this.options.logger.info({ hours: stale.map((s) => s.hour.id) }, 'stats hours rebuilt from their minutes');
    }
  }

  /**
   * Runs a partition's flush after any flush of it still in progress. Minutes are written at every
   * flush (queries see them); hours, and the offset commit that needs them, every
   * `commitIntervalMs` and when `final`.
   */
  private flush(partition: number, final = false): Promise<void> {
    const state = this.partitionState(partition);
    state.chain = state.chain.then(async () => {
      state.flushing = true;
      const full = final || Date.now() - state.lastCommit >= this.commitInterval();
      try {
        await this.flushOnce(partition, state, full);
      } catch (error) {
        this.warn('flush', { err: error, partition }, 'writing stats windows failed; retrying');
      } finally {
        state.flushing = false;
        state.lastFlush = Date.now();
        if (full) state.lastCommit = state.lastFlush;
      }
    });
    return state.chain;
  }

  /**
   * Writes the partition's changed windows as they are now, then (`full`) commits the offset
   * merged up to now. Windows changed during the writes stay dirty for the next flush; the commit
   * covers only what the written documents hold.
   */
  private async flushOnce(partition: number, state: PartitionState, full: boolean): Promise<void> {
    const offset = state.merged;
    const now = Date.now();
    const stillMine = () => !this.rebalancing && this.owned.has(partition);
    const { minutes } = this.book.dirty(partition);
    if (!(await this.writeAll(MINUTE, minutes, now, stillMine)) || !full) return;
    // After the minutes: an hour stored ahead of a minute is rebuilt by its next reader, never trusted.
    const { hours } = this.book.dirty(partition);
    if (!(await this.writeAll(HOUR, hours, now, stillMine))) return;
    if (offset === undefined || offset === state.committed || !this.consumer) return;
    await this.consumer.commitOffsets([{ topic: this.options.topic, partition, offset: (BigInt(offset) + 1n).toString() }]);
    state.committed = offset;
  }

  /** Writes windows; true when every one of them was written. */
  private async writeAll(
    resolution: typeof MINUTE | typeof HOUR,
    windows: readonly (MinuteWindow | HourWindow)[],
    now: number,
    stillMine: () => boolean,
  ): Promise<boolean> {
    if (windows.length === 0) return true;
    const versions = windows.map((w) => w.version);
    const docs: RollupDoc[] = windows.map((w) => w.toDoc(now));
    const { written, error } = await this.options.store.writeWindows(resolution, docs, stillMine, (id, e) =>
      this.options.logger.error({ err: e, window: id }, 'a stats window cannot be written; skipped'),
    );
    windows.forEach((w, i) => {
      if (written.has(w.id)) w.written = versions[i]!;
    });
    this.rollups.inc({ resolution: resolution === MINUTE ? '1m' : '1h' }, written.size);
    if (error) throw error;
    return written.size === windows.length;
  }

  private flushTick(): void {
    const now = Date.now();
    for (const partition of this.owned) {
      const state = this.partitionState(partition);
      const pending = state.merged !== state.committed || this.book.hasDirty(partition);
      if (pending && !state.flushing && now - state.lastFlush >= this.flushInterval()) void this.flush(partition);
    }
    this.book.evict(now, this.options.idleMs ?? 5 * 60_000);
  }

  /** A new assignment: windows of partitions that went elsewhere are forgotten (their owner loads them). */
  private assign(owned: Set<number>): void {
    this.owned = owned;
    this.book.drop((partition) => !owned.has(partition));
    for (const partition of this.partitions.keys()) if (!owned.has(partition)) this.partitions.delete(partition);
    // Kafka delivers again from the committed offset: what was merged past it is recognised.
    for (const state of this.partitions.values()) state.merged = state.committed;
  }

  private partitionState(partition: number): PartitionState {
    let state = this.partitions.get(partition);
    if (!state) {
      state = { lastFlush: 0, lastCommit: Date.now(), chain: Promise.resolve(), flushing: false };
      this.partitions.set(partition, state);
    }
    return state;
  }

  private flushInterval(): number {
    return this.options.flushIntervalMs ?? 2_000;
  }

  private commitInterval(): number {
    return this.options.commitIntervalMs ?? 10_000;
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

/** The agent run a fact came from (its id is `<run>:s:<seq>`). */
function runOf(fact: FactDoc): string {
  return fact._id.slice(0, fact._id.lastIndexOf(':s:'));
}
