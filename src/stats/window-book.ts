import { EntrySums, type FactDoc, HOUR, MINUTE, type RollupDoc, rollupId, windowStart } from './rollup.js';

/**
 * The aggregator's working set: the minute and hour windows of the applications whose partitions it
 * owns, merged in memory frame by frame, written back whole by `_id`.
 *
 * Each minute window carries the frames it holds, as sequence ranges per agent run, so a frame is
 * merged once however often Kafka delivers it — also after a restart, since the ranges are stored
 * with the window and loaded with it. An hour window is the sum of its minutes: every frame
 * merged into a minute is merged into its hour at the same
 * moment. An hour also stores how many frames it counted of each minute: a reader that finds it
 * disagreeing with a minute (a crash between the two writes) rebuilds it from its minutes.
 *
 * Why in memory and not recomputed from the stored facts: on FerretDB (our MongoDB-wire server)
 * only `_id` lookups are indexed, so reading a window's facts scans the collection, and updates
 * cost ~50 inserts each (docs/stats.md, "Figures"); a window written once per flush, by `_id`,
 * keeps the database's work proportional to the windows that changed.
 */

/** Sequence numbers of one agent run: sorted, disjoint, non-adjacent `[lo, hi]` ranges. */
export class SeqRanges {
  /** Flat `[lo0, hi0, lo1, hi1, …]`. Agents count up from 1, so a minute is mostly one range. */
  private readonly bounds: number[] = [];

  /** From ranges in any order, overlapping or not. */
  static of(pairs: readonly (readonly [number, number])[]): SeqRanges {
    const out = new SeqRanges();
    const sorted = pairs.filter(([lo, hi]) => lo <= hi).sort((a, b) => a[0] - b[0]);
    for (const [lo, hi] of sorted) {
      const last = out.bounds.length - 1;
      if (last > 0 && lo <= out.bounds[last]! + 1) out.bounds[last] = Math.max(out.bounds[last]!, hi);
      else out.bounds.push(lo, hi);
    }
    return out;
  }

  has(seq: number): boolean {
    const i = this.find(seq);
    return i >= 0 && i < this.bounds.length && this.bounds[i]! <= seq && seq <= this.bounds[i + 1]!;
  }

  /** Adds `seq`; false when it was held already. */
  add(seq: number): boolean {
    const b = this.bounds;
    const i = this.find(seq);
    if (i < b.length && b[i]! <= seq && seq <= b[i + 1]!) return false;
    // i is the first range ending at or after seq (or the end); the one before ends before seq.
    const joinsPrevious = i >= 2 && b[i - 1] === seq - 1;
    const joinsNext = i < b.length && b[i] === seq + 1;
    if (joinsPrevious && joinsNext) b.splice(i - 1, 2);
    else if (joinsPrevious) b[i - 1] = seq;
    else if (joinsNext) b[i] = seq;
    else b.splice(i, 0, seq, seq);
    return true;
  }

  ranges(): [number, number][] {
    const out: [number, number][] = [];
    for (let i = 0; i < this.bounds.length; i += 2) out.push([this.bounds[i]!, this.bounds[i + 1]!]);
    return out;
  }

  /** Index (even) of the first range whose end is ≥ seq, or the length when there is none. */
  private find(seq: number): number {
    let lo = 0;
    let hi = this.bounds.length / 2;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.bounds[mid * 2 + 1]! < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo * 2;
  }
}

/** A minute window as stored: the rollup document plus the frames it holds (`<run>:<lo>-<hi>`). */
export type MinuteDoc = RollupDoc & { frames: string[] };

const FRAME_RANGE = /^([A-Za-z0-9_-]+):(\d+)-(\d+)$/;

abstract class Window {
  readonly id: string;
  protected readonly sums = new EntrySums();
  facts = 0;
  dropped = 0;
  /** Bumped at every change; a write that captured an older version leaves the window dirty. */
  version = 0;
  written = 0;
  touchedAt = 0;

  constructor(
    readonly application: string,
    readonly start: number,
    readonly size: number,
    readonly partition: number,
  ) {
    this.id = rollupId(application, start);
  }

  get dirty(): boolean {
    return this.version !== this.written;
  }

  get end(): number {
    return this.start + this.size;
  }

  protected base(now: number, instances: number): RollupDoc {
    return {
      _id: this.id,
      application: this.application,
      start: this.start,
      size: this.size,
      hour: windowStart(this.start, HOUR),
      facts: this.facts,
      instances,
      dropped: this.dropped,
      entries: this.sums.toEntries(),
      computedAt: now,
    };
  }
}

export class MinuteWindow extends Window {
  private readonly frames = new Map<string, SeqRanges>();
  readonly instances = new Set<string>();
  /** Instances counted by a stored window whose ids were not kept (the count is all that is stored). */
  private storedInstances = 0;

  constructor(application: string, start: number, partition: number) {
    super(application, start, MINUTE, partition);
  }

  static fromDoc(doc: MinuteDoc, partition: number): MinuteWindow {
    const window = new MinuteWindow(doc.application, doc.start, partition);
    window.sums.add(doc.entries);
    window.facts = doc.facts;
    window.dropped = doc.dropped;
    window.storedInstances = doc.instances;
    const byRun = new Map<string, [number, number][]>();
    for (const item of doc.frames ?? []) {
      const match = FRAME_RANGE.exec(item);
      if (!match) continue;
      const pairs = byRun.get(match[1]!) ?? [];
      pairs.push([Number(match[2]), Number(match[3])]);
      byRun.set(match[1]!, pairs);
    }
    for (const [run, pairs] of byRun) window.frames.set(run, SeqRanges.of(pairs));
    return window;
  }

  holds(run: string, seq: number): boolean {
    return this.frames.get(run)?.has(seq) ?? false;
  }

  /** Merges a frame of `run`; false (nothing changes) when the window holds it already. */
  add(fact: FactDoc, run: string): boolean {
    if (!this.rangesOf(run).add(fact.seq)) return false;
    this.sums.add(fact.entries);
    this.facts += 1;
    this.dropped += fact.dropped;
    this.instances.add(fact.instanceId);
    this.version += 1;
    return true;
  }

  instanceCount(): number {
    return Math.max(this.storedInstances, this.instances.size);
  }

  toDoc(now: number): MinuteDoc {
    const frames: string[] = [];
    for (const [run, ranges] of this.frames) for (const [lo, hi] of ranges.ranges()) frames.push(`${run}:${lo}-${hi}`);
    return { ...this.base(now, this.instanceCount()), frames: frames.sort() };
  }

  private rangesOf(run: string): SeqRanges {
    let ranges = this.frames.get(run);
    if (!ranges) {
      ranges = new SeqRanges();
      this.frames.set(run, ranges);
    }
    return ranges;
  }
}

/**
 * An hour window as stored: the rollup document plus, per minute of the hour, the frames and the
 * instances it counted of that minute — so a reader can tell whether the hour agrees with a minute.
 */
export type HourDoc = RollupDoc & { minuteFacts: number[]; minuteInstances: number[] };

const MINUTES_PER_HOUR = HOUR / MINUTE;

export class HourWindow extends Window {
  private readonly perMinute = new Map<number, { facts: number; instances: number }>();
  /** It disagrees with one of its minutes (a crash came between their writes): rebuild it from them. */
  stale = false;

  constructor(application: string, start: number, partition: number) {
    super(application, start, HOUR, partition);
  }

  static fromDoc(doc: HourDoc, partition: number): HourWindow {
    const hour = new HourWindow(doc.application, doc.start, partition);
    hour.sums.add(doc.entries);
    hour.facts = doc.facts;
    hour.dropped = doc.dropped;
    for (let i = 0; i < MINUTES_PER_HOUR; i++) {
      const facts = doc.minuteFacts?.[i] ?? 0;
      if (facts > 0) hour.perMinute.set(doc.start + i * MINUTE, { facts, instances: doc.minuteInstances?.[i] ?? 0 });
    }
    return hour;
  }

  /** Adds a whole minute (when the hour is rebuilt from its minutes). */
  addMinute(minute: Pick<RollupDoc, 'start' | 'facts' | 'dropped' | 'entries' | 'instances'>): void {
    this.sums.add(minute.entries);
    this.facts += minute.facts;
    this.dropped += minute.dropped;
    this.perMinute.set(minute.start, { facts: minute.facts, instances: minute.instances });
    this.version += 1;
  }

  /** Adds a frame just merged into `minute`. */
  addFact(fact: FactDoc, minute: MinuteWindow): void {
    this.sums.add(fact.entries);
    this.facts += 1;
    this.dropped += fact.dropped;
    this.perMinute.set(minute.start, { facts: minute.facts, instances: minute.instanceCount() });
    this.version += 1;
  }

  /** Whether the hour counted exactly the frames the minute holds (frames only ever get added). */
  agrees(minute: MinuteWindow): boolean {
    return (this.perMinute.get(minute.start)?.facts ?? 0) === minute.facts;
  }

  toDoc(now: number): HourDoc {
    const minuteFacts = new Array<number>(MINUTES_PER_HOUR).fill(0);
    const minuteInstances = new Array<number>(MINUTES_PER_HOUR).fill(0);
    let instances = 0;
    for (const [start, m] of this.perMinute) {
      const i = (start - this.start) / MINUTE;
      minuteFacts[i] = m.facts;
      minuteInstances[i] = m.instances;
      // Distinct instances over the hour are not kept; the busiest minute's count is.
      instances = Math.max(instances, m.instances);
    }
    return { ...this.base(now, instances), minuteFacts, minuteInstances };
  }
}

/** What merging one frame did. */
export type Merge = 'counted' | 'duplicate';

/**
 * The windows in memory, by id. Loading is the caller's (it is I/O): `missingMinutes`,
 * `missingHours`, then `staleHours` say what to load before `merge` may be called for a set of
 * facts.
 */
export class WindowBook {
  readonly minutes = new Map<string, MinuteWindow>();
  readonly hours = new Map<string, HourWindow>();

  /** Minute ids the facts need that are not in memory. */
  missingMinutes(facts: readonly FactDoc[]): string[] {
    const out = new Set<string>();
    for (const fact of facts) {
      const id = rollupId(fact.application, fact.minute);
      if (!this.minutes.has(id)) out.add(id);
    }
    return [...out];
  }

  /** Hour ids the facts need that are not in memory. */
  missingHours(facts: readonly FactDoc[]): string[] {
    const out = new Set<string>();
    for (const fact of facts) {
      const id = rollupId(fact.application, windowStart(fact.minute, HOUR));
      if (!this.hours.has(id)) out.add(id);
    }
    return [...out];
  }

  /** Installs a minute read from the database (`null`: none stored yet). Held windows win. */
  installMinute(
    id: string,
    doc: MinuteDoc | null,
    fact: Pick<FactDoc, 'application' | 'minute'>,
    partition: number,
    nowMs: number,
  ): void {
    if (this.minutes.has(id)) return;
    const minute = doc ? MinuteWindow.fromDoc(doc, partition) : new MinuteWindow(fact.application, fact.minute, partition);
    minute.touchedAt = nowMs;
    this.minutes.set(id, minute);
    const hour = this.hours.get(rollupId(fact.application, windowStart(fact.minute, HOUR)));
    if (hour && !hour.agrees(minute)) hour.stale = true;
  }

  /** Installs an hour read from the database (`null`: none stored yet), checked against held minutes. */
  installHour(
    id: string,
    doc: HourDoc | null,
    fact: Pick<FactDoc, 'application' | 'minute'>,
    partition: number,
    nowMs: number,
  ): void {
    if (this.hours.has(id)) return;
    const start = windowStart(fact.minute, HOUR);
    const hour = doc ? HourWindow.fromDoc(doc, partition) : new HourWindow(fact.application, start, partition);
    hour.touchedAt = nowMs;
    for (let m = start; m < start + HOUR; m += MINUTE) {
      const held = this.minutes.get(rollupId(fact.application, m));
      if (held && !hour.agrees(held)) hour.stale = true;
    }
    this.hours.set(id, hour);
  }

  /** Hours that disagree with a minute, with the ids of their minutes memory does not hold. */
  staleHours(): { hour: HourWindow; unheld: string[] }[] {
    const out: { hour: HourWindow; unheld: string[] }[] = [];
    for (const hour of this.hours.values()) {
      if (!hour.stale) continue;
      const unheld: string[] = [];
      for (let m = hour.start; m < hour.end; m += MINUTE) {
        const id = rollupId(hour.application, m);
        if (!this.minutes.has(id)) unheld.push(id);
      }
      out.push({ hour, unheld });
    }
    return out;
  }

  /**
   * Rebuilds a stale hour from its minutes: those held in memory as they are now (they may hold
   * frames not yet written), the others as stored. The result is written at the next flush.
   */
  rebuildHour(stale: HourWindow, stored: ReadonlyMap<string, MinuteDoc>): void {
    const hour = new HourWindow(stale.application, stale.start, stale.partition);
    for (let m = stale.start; m < stale.end; m += MINUTE) {
      const id = rollupId(stale.application, m);
      const held = this.minutes.get(id);
      const doc = held ? held.toDoc(0) : stored.get(id);
      if (doc) hour.addMinute(doc);
    }
    hour.version = stale.version + hour.version + 1;
    hour.written = stale.written;
    hour.touchedAt = stale.touchedAt;
    this.hours.set(hour.id, hour);
  }

  /** Merges one frame into its minute and hour, which must be in memory. */
  merge(fact: FactDoc, run: string, nowMs: number): Merge {
    const minute = this.minutes.get(rollupId(fact.application, fact.minute));
    const hour = this.hours.get(rollupId(fact.application, windowStart(fact.minute, HOUR)));
    if (!minute || !hour || hour.stale) throw new Error(`window of ${fact._id} not loaded`);
    minute.touchedAt = nowMs;
    hour.touchedAt = nowMs;
    if (!minute.add(fact, run)) return 'duplicate';
    hour.addFact(fact, minute);
    return 'counted';
  }

  /** Windows of a partition that changed since they were last written. */
  dirty(partition: number): { minutes: MinuteWindow[]; hours: HourWindow[] } {
    const mine = <W extends Window>(windows: Iterable<W>) => [...windows].filter((w) => w.partition === partition && w.dirty);
    return { minutes: mine(this.minutes.values()), hours: mine(this.hours.values()) };
  }

  hasDirty(partition: number): boolean {
    for (const w of this.minutes.values()) if (w.partition === partition && w.dirty) return true;
    for (const w of this.hours.values()) if (w.partition === partition && w.dirty) return true;
    return false;
  }

  /**
   * Forgets written windows nothing touched for `idleMs` and that ended before it: a late frame
   * loads them again.
   */
  evict(nowMs: number, idleMs: number): void {
    const idleSince = nowMs - idleMs;
    for (const [id, w] of this.minutes)
      if (!w.dirty && w.touchedAt < idleSince && w.end * 1_000 < idleSince) this.minutes.delete(id);
    for (const [id, w] of this.hours) if (!w.dirty && w.touchedAt < idleSince && w.end * 1_000 < idleSince) this.hours.delete(id);
  }

  /** Forgets a partition's windows (it went to another aggregator, which loads what was written). */
  drop(partitions: (partition: number) => boolean): void {
    for (const [id, w] of this.minutes) if (partitions(w.partition)) this.minutes.delete(id);
    for (const [id, w] of this.hours) if (partitions(w.partition)) this.hours.delete(id);
  }
}
