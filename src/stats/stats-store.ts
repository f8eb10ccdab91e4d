import { randomUUID } from 'node:crypto';
import {
  type Collection,
  type Db,
  type Filter,
  MongoBulkWriteError,
  MongoServerError,
  type OptionalUnlessRequiredId,
} from 'mongodb';
import type { z } from 'zod';
import type { CallRecordSchema } from '../agent-protocol/messages.js';
import {
  buildHourRollup,
  buildMinuteRollup,
  type FactDoc,
  HOUR,
  MINUTE,
  type Resolution,
  type RollupDoc,
  rollupId,
  SECOND,
  type StatsEntry,
  windowStart,
} from './rollup.js';
import type { Window } from './stats-views.js';

/**
 * Statistics in MongoDB, with the driver directly (bulk inserts, no mongoose documents):
 *
 * - `stats_facts`: one document per `stats` frame, `_id = <instanceId>:s:<seq>`: the 1 s resolution
 *   and the source every rollup is recomputed from. Inserted, never updated: a redelivered frame
 *   hits the unique `_id` and is not stored twice.
 * - `stats_minutes`, `stats_hours`: one document per application and window, `_id =
 *   <application>:<window start>`, replaced whole by a recomputation from the window's facts
 *   (minutes) or minutes (hours). A replace only lands when it holds at least as many facts as the
 *   stored one, so a slow, stale recomputation cannot overwrite a newer one.
 * - `stats_dirty`: windows that gained facts and await recomputation; each mark carries a fresh
 *   token, and a recomputation removes the mark only if the token is unchanged (no fact arrived
 *   meanwhile).
 * - `stats_records`: call records, `_id = <instanceId>:r:<seq>:<index>`.
 *
 * No transactions (FerretDB has none): every step is idempotent and ordered so that a crash
 * between two steps is repaired by doing them again.
 */

export type CallRecord = z.output<typeof CallRecordSchema>;

/**
 * An entry as stored: the histogram flat, `[bucket, count, bucket, count, …]`, because FerretDB
 * refuses nested arrays (MongoDB would not mind; one format for both).
 */
export type StoredEntry = Omit<StatsEntry, 'histogram'> & { histogram: number[] };
export type FactRow = Omit<FactDoc, 'entries'> & { entries: StoredEntry[] };
export type RollupRow = Omit<RollupDoc, 'entries'> & { entries: StoredEntry[] };

export function toStored(entries: readonly StatsEntry[]): StoredEntry[] {
  return entries.map((e) => ({ ...e, histogram: e.histogram.flat() }));
}

export function fromStored(entries: readonly StoredEntry[]): StatsEntry[] {
  return entries.map((e) => {
    const histogram: [number, number][] = [];
    for (let i = 0; i + 1 < e.histogram.length; i += 2) histogram.push([e.histogram[i]!, e.histogram[i + 1]!]);
    return { ...e, histogram };
  });
}

const fromFactRow = (row: FactRow): FactDoc => ({ ...row, entries: fromStored(row.entries) });
const fromRollupRow = (row: RollupRow): RollupDoc => ({ ...row, entries: fromStored(row.entries) });

export interface CallRecordDoc extends CallRecord {
  _id: string;
  application: string;
  instanceId: string;
}

export interface DirtyMark {
  /** `m:<application>:<start>` or `h:<application>:<start>`. */
  _id: string;
  kind: 'm' | 'h';
  application: string;
  start: number;
  /** The Kafka partition the facts came from: the aggregator owning it recomputes the window. */
  partition: number;
  token: string;
  markedAt: number;
}

/** How long each resolution is kept, in seconds. */
export interface Retention {
  facts: number;
  minutes: number;
  hours: number;
  records: number;
}

export const DEFAULT_RETENTION: Retention = {
  facts: 2 * HOUR,
  minutes: 7 * 24 * HOUR,
  hours: 90 * 24 * HOUR,
  records: 7 * 24 * HOUR,
};

/**
 * Facts older than this (before retention removes them, with a margin) are refused as late: their
 * window may already be losing facts to retention, so recomputing it would under-count.
 */
export const LATE_MARGIN = 10 * MINUTE;

/**
 * Update statements per bulk write: FerretDB 1.24 does not come back from an `update` command of
 * 100 statements (measured on the local stack: 50 replaces by `_id` take 0.35 s, 100 spin a core
 * for minutes and block that database).
 */
const MAX_BULK = 50;

/** What became of one document of an idempotent insert. */
export type WriteStatus = 'inserted' | 'duplicate' | 'rejected';

/** Told about each document refused for good, with the database's reason. */
export type Rejected = (id: string, reason: string) => void;

/** Server errors about the document itself, which no retry cures. */
const PERMANENT_CODES = new Set([2, 10334, 17419, 17280, 52]);

function isDuplicateKey(error: unknown): boolean {
  return error instanceof MongoServerError && error.code === 11000;
}

export class StatsStore {
  readonly facts: Collection<FactRow>;
  readonly minutes: Collection<RollupRow>;
  readonly hours: Collection<RollupRow>;
  readonly records: Collection<CallRecordDoc>;
  readonly dirty: Collection<DirtyMark>;

  constructor(
    readonly db: Db,
    readonly retention: Retention = DEFAULT_RETENTION,
  ) {
    this.facts = db.collection<FactRow>('stats_facts');
    this.minutes = db.collection<RollupRow>('stats_minutes');
    this.hours = db.collection<RollupRow>('stats_hours');
    this.records = db.collection<CallRecordDoc>('stats_records');
    this.dirty = db.collection<DirtyMark>('stats_dirty');
  }

  /** The oldest second a fact may cover to be accepted now. */
  lateBefore(nowMs: number): number {
    return Math.floor(nowMs / 1_000) - (this.retention.facts - LATE_MARGIN);
  }

  /** One index at a time: FerretDB drops the connection on a multi-index createIndexes whose indexes exist. */
  async ensureIndexes(): Promise<void> {
    const specs: [Collection<FactRow> | Collection<RollupRow> | Collection<CallRecordDoc>, Record<string, 1 | -1>][] = [
      [this.facts, { application: 1, minute: 1 }],
      [this.facts, { application: 1, second: 1 }],
      [this.facts, { second: 1 }],
      [this.minutes, { application: 1, start: 1 }],
      [this.minutes, { application: 1, hour: 1 }],
      [this.minutes, { start: 1 }],
      [this.hours, { application: 1, start: 1 }],
      [this.hours, { start: 1 }],
      [this.records, { at: -1 }],
      [this.records, { application: 1, at: -1 }],
      [this.records, { caller: 1, at: -1 }],
      [this.records, { callee: 1, at: -1 }],
      [this.records, { traceId: 1 }],
    ];
    for (const [collection, key] of specs) await collection.createIndex(key);
  }

  // ---- write side ------------------------------------------------------------------------------

  insertFacts(facts: FactDoc[], onRejected?: Rejected): Promise<WriteStatus[]> {
    return insertIdempotent(
      this.facts,
      facts.map((f) => ({ ...f, entries: toStored(f.entries) })),
      onRejected,
    );
  }

  insertRecords(records: CallRecordDoc[], onRejected?: Rejected): Promise<WriteStatus[]> {
    return insertIdempotent(this.records, records, onRejected);
  }

  /** Marks windows for recomputation (a new token each time); upserts by `_id` only. */
  async markDirty(kind: 'm' | 'h', windows: Iterable<{ application: string; start: number }>, partition: number): Promise<void> {
    const now = Date.now();
    const ops = [...windows].map(({ application, start }) => ({
      updateOne: {
        filter: { _id: `${kind}:${application}:${start}` },
        update: { $set: { kind, application, start, partition, token: randomUUID(), markedAt: now } },
        upsert: true,
      },
    }));
    for (let i = 0; i < ops.length; i += MAX_BULK) await this.dirty.bulkWrite(ops.slice(i, i + MAX_BULK), { ordered: false });
  }

  async pendingMarks(limit = 1_000): Promise<DirtyMark[]> {
    return this.dirty.find({}).limit(limit).toArray();
  }

  /**
   * Recomputes marked windows of one application and one kind from their sources (one read for
   * all of them), writes them, marks the hours of minutes, and removes each mark if nothing marked
   * it again meanwhile. Safe to run twice, concurrently, or after a crash at any step. A window the
   * database refuses for good is reported to `onUnwritable` and its mark dropped.
   */
  async recompute(
    marks: readonly DirtyMark[],
    onUnwritable: (mark: DirtyMark, error: unknown) => void = () => undefined,
    now = Date.now(),
  ): Promise<RollupDoc[]> {
    const first = marks[0];
    if (!first) return [];
    if (marks.some((m) => m.application !== first.application || m.kind !== first.kind)) {
      throw new Error('recompute takes marks of one application and kind');
    }
    const { application, kind } = first;
    const starts = [...new Set(marks.map((m) => m.start))];
    const docs = new Map<number, RollupDoc>();
    if (kind === 'm') {
      const facts = (await this.facts.find({ application, minute: { $in: starts } }).toArray()).map(fromFactRow);
      for (const start of starts) {
        const mine = facts.filter((f) => f.minute === start);
        if (mine.length > 0) docs.set(start, buildMinuteRollup(application, start, mine, now));
      }
    } else {
      const minutes = (await this.minutes.find({ application, hour: { $in: starts } }).toArray()).map(fromRollupRow);
      for (const start of starts) {
        const mine = minutes.filter((m) => m.hour === start);
        if (mine.length > 0) docs.set(start, buildHourRollup(application, start, mine, now));
      }
    }
    for (const mark of marks) {
      const doc = docs.get(mark.start);
      if (!doc) continue;
      try {
        await this.replaceGuarded(kind === 'm' ? this.minutes : this.hours, doc);
      } catch (error) {
        if (!isUnwritable(error)) throw error;
        onUnwritable(mark, error);
        docs.delete(mark.start);
      }
    }
    if (kind === 'm') {
      const hours = new Set(starts.map((s) => windowStart(s, HOUR)));
      await this.markDirty(
        'h',
        [...hours].map((start) => ({ application, start })),
        first.partition,
      );
    }
    for (const mark of marks) await this.dirty.deleteOne({ _id: mark._id, token: mark.token });
    return [...docs.values()];
  }

  /** Replaces unless the stored window already holds more facts; false when it did. */
  private async replaceGuarded(collection: Collection<RollupRow>, doc: RollupDoc): Promise<boolean> {
    const { _id, ...rest } = doc;
    const body = { ...rest, entries: toStored(rest.entries) };
    try {
      await collection.replaceOne({ _id, facts: { $lte: doc.facts } }, body, { upsert: true });
      return true;
    } catch (error) {
      // The filter did not match an existing document, so the upsert tried to insert its _id.
      if (isDuplicateKey(error)) return false;
      throw error;
    }
  }

  /** Deletes what is past retention; returns how many documents of each kind went. */
  async cleanup(nowMs = Date.now()): Promise<Record<'facts' | 'minutes' | 'hours' | 'records', number>> {
    const now = Math.floor(nowMs / 1_000);
    const r = this.retention;
    const [facts, minutes, hours, records] = await Promise.all([
      this.facts.deleteMany({ second: { $lt: now - r.facts } }),
      this.minutes.deleteMany({ start: { $lt: now - r.minutes } }),
      this.hours.deleteMany({ start: { $lt: now - r.hours } }),
      this.records.deleteMany({ at: { $lt: nowMs - r.records * 1_000 } }),
    ]);
    return {
      facts: facts.deletedCount,
      minutes: minutes.deletedCount,
      hours: hours.deletedCount,
      records: records.deletedCount,
    };
  }

  // ---- read side -------------------------------------------------------------------------------

  /** Windows at a resolution with start in [from, to) (epoch seconds), one application or all. */
  async windows(resolution: Resolution, from: number, to: number, application?: string): Promise<Window[]> {
    const app = application === undefined ? {} : { application };
    if (resolution === SECOND) {
      const facts = await this.facts
        .find({ ...app, second: { $gte: from, $lt: to } }, { projection: { application: 1, second: 1, dropped: 1, entries: 1 } })
        .toArray();
      return facts.map((f) => ({
        application: f.application,
        start: f.second,
        dropped: f.dropped,
        entries: fromStored(f.entries),
      }));
    }
    const collection = resolution === MINUTE ? this.minutes : this.hours;
    const rows = await collection
      .find({ ...app, start: { $gte: from, $lt: to } }, { projection: { application: 1, start: 1, dropped: 1, entries: 1 } })
      .toArray();
    return rows.map((r) => ({ application: r.application, start: r.start, dropped: r.dropped, entries: fromStored(r.entries) }));
  }

  async window(resolution: typeof MINUTE | typeof HOUR, application: string, start: number): Promise<RollupDoc | null> {
    const row = await (resolution === MINUTE ? this.minutes : this.hours).findOne({ _id: rollupId(application, start) });
    return row ? fromRollupRow(row) : null;
  }

  async searchRecords(
    filter: {
      from?: number;
      to?: number;
      application?: string;
      caller?: string;
      callee?: string;
      status?: number;
      minLatencyMs?: number;
      traceId?: string;
      outcome?: CallRecord['outcome'];
    },
    page: { offset: number; limit: number },
  ): Promise<{ items: (CallRecord & { id: string; application: string; instanceId: string })[]; hasMore: boolean }> {
    const query: Filter<CallRecordDoc> = {};
    if (filter.from !== undefined || filter.to !== undefined) {
      query.at = {
        ...(filter.from !== undefined ? { $gte: filter.from } : {}),
        ...(filter.to !== undefined ? { $lt: filter.to } : {}),
      };
    }
    for (const field of ['application', 'caller', 'callee', 'status', 'traceId', 'outcome'] as const) {
      if (filter[field] !== undefined) (query as Record<string, unknown>)[field] = filter[field];
    }
    if (filter.minLatencyMs !== undefined) query.latencyMs = { $gte: filter.minLatencyMs };
    const docs = await this.records
      .find(query)
      .sort({ at: -1, _id: 1 })
      .skip(page.offset)
      .limit(page.limit + 1)
      .toArray();
    return {
      items: docs.slice(0, page.limit).map(({ _id, ...rest }) => ({ id: _id, ...rest })),
      hasMore: docs.length > page.limit,
    };
  }
}

/**
 * insertMany, unordered, where a duplicate `_id` means "already stored" (not an error) and a
 * document the server refuses for good is reported, not retried; anything else throws (the caller
 * retries the whole call, which is idempotent). One status per document, in order.
 */
export async function insertIdempotent<T extends { _id: string }>(
  collection: Collection<T>,
  docs: T[],
  onRejected: Rejected = () => undefined,
): Promise<WriteStatus[]> {
  if (docs.length === 0) return [];
  try {
    // The driver sets missing _ids on the objects it is given; ours are set, but give it copies anyway.
    await collection.insertMany(docs.map((d) => ({ ...d })) as OptionalUnlessRequiredId<T>[], { ordered: false });
    return docs.map(() => 'inserted');
  } catch (error) {
    if (error instanceof MongoBulkWriteError) {
      const errors = [error.writeErrors].flat();
      if (errors.length > 0 && errors.every((e) => e.code === 11000 || PERMANENT_CODES.has(e.code))) {
        const failed = new Map(errors.map((e) => [e.index, e]));
        return docs.map((doc, i) => {
          const e = failed.get(i);
          if (e === undefined) return 'inserted';
          if (e.code === 11000) return 'duplicate';
          onRejected(doc._id, e.errmsg ?? `code ${e.code}`);
          return 'rejected';
        });
      }
      throw error;
    }
    if (!isClientSideRefusal(error)) throw error;
    // Refused before it left (e.g. a document over the BSON size limit): find which, one by one.
    if (docs.length === 1) {
      onRejected(docs[0]!._id, (error as Error).message);
      return ['rejected'];
    }
    const out: WriteStatus[] = [];
    for (const doc of docs) out.push(...(await insertIdempotent(collection, [doc], onRejected)));
    return out;
  }
}

/** An error about the document itself (too large, invalid), which no retry cures. */
export function isUnwritable(error: unknown): boolean {
  return isClientSideRefusal(error) || (error instanceof MongoServerError && PERMANENT_CODES.has(Number(error.code)));
}

function isClientSideRefusal(error: unknown): boolean {
  return error instanceof RangeError || (error instanceof Error && error.name === 'BSONError');
}
