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
import { type FactDoc, HOUR, MINUTE, type Resolution, type RollupDoc, rollupId, SECOND, type StatsEntry } from './rollup.js';
import type { Window } from './stats-views.js';
import type { HourDoc, MinuteDoc } from './window-book.js';

/**
 * Statistics in MongoDB, with the driver directly (bulk inserts, no mongoose documents):
 *
 * - `stats_facts`: one document per `stats` frame, `_id = <run>:s:<seq>`: the 1 s resolution.
 *   Inserted, never updated: a redelivered frame hits the unique `_id` and is not stored twice.
 * - `stats_minutes`, `stats_hours`: one document per application and window, `_id =
 *   <application>:<window start>`, written whole (replace by `_id`) from the aggregator's windows
 *   in memory (`window-book.ts`); a minute also lists the frames it holds, which is what makes
 *   counting idempotent.
 * - `stats_records`: call records, `_id = <run>:r:<seq>:<index>`.
 *
 * No transactions (FerretDB has none): every write is idempotent, and the aggregator commits a
 * Kafka offset only after everything before it is written.
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

const fromRollupRow = (row: RollupRow): RollupDoc => ({ ...row, entries: fromStored(row.entries) });

export interface CallRecordDoc extends CallRecord {
  _id: string;
  application: string;
  instanceId: string;
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
 * Facts older than this (before retention removes them, with a margin) are refused as late: the
 * 1 s resolution would lose them at once, and windows that old are no longer looked at live.
 */
export const LATE_MARGIN = 10 * MINUTE;

/**
 * Windows written at once, one replace per `update` command: FerretDB 1.24 does not come back from
 * an `update` command of 100 statements (measured on the local stack: 50 replaces by `_id` take
 * 0.35 s, 100 spin a core for minutes and block that database), and its SQLite backend answers
 * concurrent writers with `database is locked (SQLITE_BUSY)`.
 */
const WRITE_CONCURRENCY = 2;

/** Windows read at once by `_id` (FerretDB answers one `_id` in 2–5 ms, any other filter by a scan). */
const READ_CONCURRENCY = 16;

/** A range of one application's windows up to this many is read by `_id`, a longer one by a scan. */
const MAX_ID_READS = 400;

/** What became of one document of an idempotent insert. */
export type WriteStatus = 'inserted' | 'duplicate' | 'rejected';

/** Told about each document refused for good, with the database's reason. */
export type Rejected = (id: string, reason: string) => void;

/** Server errors about the document itself, which no retry cures. */
const PERMANENT_CODES = new Set([2, 10334, 17419, 17280, 52]);

export class StatsStore {
  readonly facts: Collection<FactRow>;
  readonly minutes: Collection<RollupRow>;
  readonly hours: Collection<RollupRow>;
  readonly records: Collection<CallRecordDoc>;
  private windowWrites: Promise<unknown> = Promise.resolve();

  constructor(
    readonly db: Db,
    readonly retention: Retention = DEFAULT_RETENTION,
  ) {
    this.facts = db.collection<FactRow>('stats_facts');
    this.minutes = db.collection<RollupRow>('stats_minutes');
    this.hours = db.collection<RollupRow>('stats_hours');
    this.records = db.collection<CallRecordDoc>('stats_records');
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

  /** Stored minute windows by id (absent ids are missing from the map). */
  async loadMinutes(ids: readonly string[]): Promise<Map<string, MinuteDoc>> {
    const out = new Map<string, MinuteDoc>();
    await eachConcurrently(ids, READ_CONCURRENCY, async (id) => {
      const row = await this.minutes.findOne<RollupRow & { frames?: string[] }>({ _id: id });
      if (row) out.set(id, { ...fromRollupRow(row), frames: row.frames ?? [] });
    });
    return out;
  }

  /** Stored hour windows by id (absent ids are missing from the map). */
  async loadHours(ids: readonly string[]): Promise<Map<string, HourDoc>> {
    const out = new Map<string, HourDoc>();
    await eachConcurrently(ids, READ_CONCURRENCY, async (id) => {
      const row = await this.hours.findOne<RollupRow & { minuteFacts?: number[]; minuteInstances?: number[] }>({ _id: id });
      if (row)
        out.set(id, { ...fromRollupRow(row), minuteFacts: row.minuteFacts ?? [], minuteInstances: row.minuteInstances ?? [] });
    });
    return out;
  }

  /**
   * Writes windows whole, by `_id`, until one fails or `stillMine()` says no (the partition is
   * moving to another aggregator). A window the database refuses for good is reported to
   * `onUnwritable` and counts as written (it would block its partition otherwise). Resolves with
   * the ids written and, if it stopped on one, the error.
   */
  writeWindows(
    resolution: typeof MINUTE | typeof HOUR,
    docs: readonly RollupDoc[],
    stillMine: () => boolean,
    onUnwritable: (id: string, error: unknown) => void,
  ): Promise<{ written: Set<string>; error?: Error }> {
    // One partition's writes at a time: more writers only queue in the database's lock.
    const run = this.windowWrites.then(() => this.replaceWindows(resolution, docs, stillMine, onUnwritable));
    this.windowWrites = run.catch(() => undefined);
    return run;
  }

  private async replaceWindows(
    resolution: typeof MINUTE | typeof HOUR,
    docs: readonly RollupDoc[],
    stillMine: () => boolean,
    onUnwritable: (id: string, error: unknown) => void,
  ): Promise<{ written: Set<string>; error?: Error }> {
    const collection = resolution === MINUTE ? this.minutes : this.hours;
    const written = new Set<string>();
    let error: Error | undefined;
    await eachConcurrently(docs, WRITE_CONCURRENCY, async (doc) => {
      if (error !== undefined || !stillMine()) return;
      const { _id, ...rest } = doc;
      try {
        await retryBusy(() => collection.replaceOne({ _id }, { ...rest, entries: toStored(rest.entries) }, { upsert: true }));
      } catch (e) {
        if (!isUnwritable(e)) {
          error ??= e instanceof Error ? e : new Error(String(e));
          return;
        }
        onUnwritable(_id, e);
      }
      written.add(_id);
    });
    return error === undefined ? { written } : { written, error };
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
    const projection = { application: 1, start: 1, dropped: 1, entries: 1 };
    const first = Math.ceil(from / resolution) * resolution;
    let rows: Pick<RollupRow, 'application' | 'start' | 'dropped' | 'entries'>[];
    if (application !== undefined && (to - first) / resolution <= MAX_ID_READS) {
      // One application's windows have known ids: reading them one by one beats a scan on FerretDB.
      const starts: number[] = [];
      for (let start = first; start < to; start += resolution) starts.push(start);
      const found: (typeof rows)[number][] = [];
      await eachConcurrently(starts, READ_CONCURRENCY, async (start) => {
        const row = await collection.findOne({ _id: rollupId(application, start) }, { projection });
        if (row) found.push(row);
      });
      rows = found.sort((a, b) => a.start - b.start);
    } else {
      rows = await collection.find({ ...app, start: { $gte: from, $lt: to } }, { projection }).toArray();
    }
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

/** Runs `work` on every item, at most `limit` at a time; rejects with the first failure. */
async function eachConcurrently<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  });
  await Promise.all(lanes);
}

/** SQLite (FerretDB's backend) refuses a write while another holds the lock; it goes through a moment later. */
async function retryBusy<T>(write: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await write();
    } catch (error) {
      const busy = error instanceof MongoServerError && /SQLITE_BUSY|database is locked/.test(error.message);
      if (!busy || attempt >= 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt));
    }
  }
}
