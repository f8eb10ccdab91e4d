import type { z } from 'zod';
import type { RecordsSchema, StatsSchema } from '../../../src/agent-protocol/messages.js';
import type { Engine } from '../engine/index.js';
import type { Faults } from './log.js';
import type { CallRecorder } from './records.js';

/**
 * Sends the engine's per-second statistics and the call records to the server
 * (docs/agent-protocol.md "Statistics and call records"). Once a second, shortly after the wall
 * clock's second turns, the seconds that have ended are drained into `stats` frames (at most
 * MAX_ENTRIES_PER_FRAME entries each) and the records kept into `records` frames. Each kind is
 * numbered 1, 2, 3… and kept in its own bounded outbox until the server acknowledges it
 * (`stats-ack`: at-least-once): sent at once while the session is established; while it is not,
 * kept (oldest dropped first, the drops reported in the next frame sent), then sent in order after
 * the next welcome, a few at a time so a long outage does not block the application's event loop.
 */

export type StatsFrame = z.output<typeof StatsSchema>;
export type RecordsFrame = z.output<typeof RecordsSchema>;

export const MAX_ENTRIES_PER_FRAME = 500;
export const MAX_RECORDS_PER_FRAME = 1_000;
/** Frames kept per kind, waiting to be sent or acknowledged (10 minutes of one stats frame a second)… */
export const MAX_BUFFERED_FRAMES = 600;
/** …and entries or records in them, so a busy instance's buffer stays within tens of MB. */
export const MAX_BUFFERED_ENTRIES = 60_000;
export const MAX_BUFFERED_RECORDS = 20_000;
/** A frame sent this long ago and not acknowledged is presumed lost (a connection that died quietly): sent again. */
export const ACK_TIMEOUT_MS = 30_000;
/** A frame the server refused (its queue full, or shutting down) is sent again after this long, and newer ones with it. */
export const REFUSED_RETRY_MS = 1_000;
/** Drained this long after the second turns: calls that end just after it are still in their second's frame. */
const TICK_DELAY_MS = 100;
/** Frames sent per turn of the event loop while catching up. */
const FLUSH_BATCH = 20;

type Frame = StatsFrame | RecordsFrame;

interface InFlight<F> {
  frame: F;
  sentAt: number;
}

/**
 * Frames of one kind on their way out: numbered, kept until the server acknowledges them, oldest
 * dropped first. A frame waits (to be sent, or sent again) or is in flight (sent, not yet
 * acknowledged); both lists are ordered by seq, and frames are sent in seq order, so the
 * acknowledgement of a frame nearly always concerns the first in flight.
 */
export class Outbox<F extends Frame> {
  /** Frames sent (each counted once, however often it is sent again), and dropped (buffer full), since the start. */
  sent = 0;
  dropped = 0;
  private waiting: F[] = [];
  private inFlight: InFlight<F>[] = [];
  private items = 0;
  private seq = 0;
  /** The highest seq sent: a frame above it is sent for the first time, and carries the drops not yet reported. */
  private lastSent = 0;
  /** Dropped and not yet reported in a frame sent. */
  private unreported = 0;
  /** Nothing is sent before this (the server refused a frame). */
  private heldUntil = 0;

  constructor(
    private readonly maxFrames: number,
    private readonly maxItems: number,
    private readonly itemsOf: (frame: F) => number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Frames kept: waiting to be sent, or sent and not yet acknowledged. */
  get buffered(): number {
    return this.waiting.length + this.inFlight.length;
  }

  get unacknowledged(): number {
    return this.inFlight.length;
  }

  nextSeq(): number {
    return ++this.seq;
  }

  add(frame: F): void {
    this.waiting.push(frame);
    this.items += this.itemsOf(frame);
    while (this.buffered > this.maxFrames || (this.items > this.maxItems && this.buffered > 1)) this.dropOldest();
  }

  /** Sends up to `max` waiting frames in seq order while `send` takes them: EMPTY (nothing to send now), MORE or REFUSED. */
  flush(send: (frame: F) => boolean, max: number): number {
    if (this.now() < this.heldUntil) return EMPTY;
    for (let n = 0; n < max && this.waiting.length > 0; n++) {
      const frame = this.waiting[0]!;
      // A frame sent again keeps its count: the server takes whichever copy arrives first.
      const first = frame.seq > this.lastSent;
      if (first) frame.dropped = this.unreported;
      if (!send(frame)) return REFUSED;
      this.waiting.shift();
      const entry = { frame, sentAt: this.now() };
      this.inFlight.splice(positionOf(this.inFlight, frame.seq, seqOfEntry), 0, entry);
      if (first) {
        this.lastSent = frame.seq;
        this.unreported = 0;
        this.sent++;
      }
    }
    return this.waiting.length > 0 ? MORE : EMPTY;
  }

  /**
   * The server's `stats-ack`: an accepted frame is forgotten; a refused one waits to be sent
   * again, and nothing is sent for REFUSED_RETRY_MS. Unknown seqs (acknowledged already, or
   * dropped) are ignored.
   */
  acknowledge(seq: number, accepted: boolean): void {
    const i = positionOf(this.inFlight, seq, seqOfEntry);
    if (this.inFlight[i]?.frame.seq === seq) {
      const { frame } = i === 0 ? this.inFlight.shift()! : this.inFlight.splice(i, 1)[0]!;
      if (accepted) this.items -= this.itemsOf(frame);
      else {
        this.waiting.splice(positionOf(this.waiting, seq, seqOfFrame), 0, frame);
        this.heldUntil = this.now() + REFUSED_RETRY_MS;
      }
      return;
    }
    // Presumed lost and waiting to be sent again, but it had arrived after all.
    const w = positionOf(this.waiting, seq, seqOfFrame);
    if (accepted && this.waiting[w]?.seq === seq) this.items -= this.itemsOf(this.waiting.splice(w, 1)[0]!);
  }

  /** A new session: every frame in flight may have been lost with the previous one, so all are sent again, first. */
  resend(): void {
    this.takeBack(() => true);
    this.heldUntil = 0;
  }

  /** Frames in flight for ACK_TIMEOUT_MS are sent again. */
  expire(): void {
    const before = this.now() - ACK_TIMEOUT_MS;
    this.takeBack((entry) => entry.sentAt <= before);
  }

  private takeBack(lost: (entry: InFlight<F>) => boolean): void {
    if (!this.inFlight.some(lost)) return;
    const back = this.inFlight.filter(lost).map((entry) => entry.frame);
    this.inFlight = this.inFlight.filter((entry) => !lost(entry));
    this.waiting = [...back, ...this.waiting].sort((a, b) => a.seq - b.seq);
  }

  private dropOldest(): void {
    const flying = this.inFlight[0];
    const waiting = this.waiting[0];
    const frame =
      flying !== undefined && (waiting === undefined || flying.frame.seq < waiting.seq)
        ? this.inFlight.shift()!.frame
        : this.waiting.shift()!;
    this.items -= this.itemsOf(frame);
    this.unreported++;
    this.dropped++;
  }
}

const seqOfEntry = (entry: { frame: Frame }) => entry.frame.seq;
const seqOfFrame = (frame: Frame) => frame.seq;

/** Where `seq` is, or would go, in a list ordered by seq; the ends, where it nearly always is, are tried first. */
function positionOf<T>(list: readonly T[], seq: number, seqOf: (item: T) => number): number {
  if (list.length === 0 || seq <= seqOf(list[0]!)) return 0;
  if (seq > seqOf(list[list.length - 1]!)) return list.length;
  // seqOf(list[low - 1]) < seq <= seqOf(list[high])
  let low = 1;
  let high = list.length - 1;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (seqOf(list[mid]!) < seq) low = mid + 1;
    else high = mid;
  }
  return low;
}

const EMPTY = 0;
const MORE = 1;
const REFUSED = 2;

export interface ReporterOptions {
  engine: Pick<Engine, 'drainSeconds'>;
  recorder: Pick<CallRecorder, 'drain'>;
  /** Emits a frame if the session is established; false otherwise (the frame stays queued). */
  send: (frame: Frame) => boolean;
  faults: Faults;
  /** Called before each drain: the agent corrects its clock's mapping to the wall clock here. */
  beforeTick?: () => void;
  /** A monotonic clock in ms, for acknowledgement timeouts and retries (performance.now() by default). */
  now?: () => number;
}

export class Reporter {
  readonly stats: Outbox<StatsFrame>;
  readonly records: Outbox<RecordsFrame>;
  private timer: NodeJS.Timeout | undefined;
  private pumping: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly options: ReporterOptions) {
    this.stats = new Outbox(MAX_BUFFERED_FRAMES, MAX_BUFFERED_ENTRIES, (f) => f.entries.length, options.now);
    this.records = new Outbox(MAX_BUFFERED_FRAMES, MAX_BUFFERED_RECORDS, (f) => f.records.length, options.now);
  }

  /** Drains once a second, just after each wall-clock second begins. */
  start(): void {
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    clearTimeout(this.pumping);
    this.timer = this.pumping = undefined;
  }

  /** Drains the ended seconds and the records kept into frames, and sends what can be sent (again). */
  tick(): void {
    try {
      this.stats.expire();
      this.records.expire();
      this.options.beforeTick?.();
      for (const { second, entries } of this.options.engine.drainSeconds()) {
        for (let i = 0; i < entries.length; i += MAX_ENTRIES_PER_FRAME) {
          const chunk = entries.slice(i, i + MAX_ENTRIES_PER_FRAME);
          this.stats.add({ type: 'stats', seq: this.stats.nextSeq(), second, dropped: 0, entries: chunk });
        }
      }
      const records = this.options.recorder.drain();
      for (let i = 0; i < records.length; i += MAX_RECORDS_PER_FRAME) {
        const chunk = records.slice(i, i + MAX_RECORDS_PER_FRAME);
        this.records.add({ type: 'records', seq: this.records.nextSeq(), dropped: 0, records: chunk });
      }
    } catch (error) {
      this.options.faults.record('stats-tick', error);
    }
    this.flush();
  }

  /** Sends the waiting frames in order; called on every tick. */
  flush(): void {
    if (this.pumping !== undefined) return;
    this.pump();
  }

  /** The session is (re)established: the frames not acknowledged on the previous one go first. */
  resend(): void {
    this.stats.resend();
    this.records.resend();
    this.flush();
  }

  /** The server's `stats-ack` for one frame. */
  acknowledge(kind: Frame['type'], seq: number, accepted: boolean): void {
    try {
      (kind === 'stats' ? this.stats : this.records).acknowledge(seq, accepted);
    } catch (error) {
      this.options.faults.record('stats-ack', error);
    }
  }

  private pump(): void {
    this.pumping = undefined;
    try {
      const send = this.options.send;
      const stats = this.stats.flush(send, FLUSH_BATCH);
      const records = stats === REFUSED ? REFUSED : this.records.flush(send, FLUSH_BATCH);
      // Frames left and the session takes them: the rest on a later turn of the event loop.
      if ((stats === MORE || records === MORE) && stats !== REFUSED && records !== REFUSED) {
        this.pumping = setTimeout(() => this.pump(), 10);
        this.pumping.unref();
      }
    } catch (error) {
      this.options.faults.record('stats-send', error);
    }
  }

  private schedule(): void {
    if (!this.running) return;
    const delay = 1_000 - (Date.now() % 1_000) + TICK_DELAY_MS;
    this.timer = setTimeout(() => {
      this.tick();
      this.schedule();
    }, delay);
    this.timer.unref();
  }
}
