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
 * numbered 1, 2, 3… and queued in its own bounded outbox: sent at once while the session is
 * established; while it is not, kept (oldest dropped first, the drops reported in the next frame
 * sent), then sent in order after the next welcome, a few at a time so a long outage does not
 * block the application's event loop.
 */

export type StatsFrame = z.output<typeof StatsSchema>;
export type RecordsFrame = z.output<typeof RecordsSchema>;

export const MAX_ENTRIES_PER_FRAME = 500;
export const MAX_RECORDS_PER_FRAME = 1_000;
/** Frames kept per kind while disconnected (10 minutes of one stats frame a second)… */
export const MAX_BUFFERED_FRAMES = 600;
/** …and entries or records in them, so a busy instance's buffer stays within tens of MB. */
export const MAX_BUFFERED_ENTRIES = 60_000;
export const MAX_BUFFERED_RECORDS = 20_000;
/** Drained this long after the second turns: calls that end just after it are still in their second's frame. */
const TICK_DELAY_MS = 100;
/** Frames sent per turn of the event loop while catching up. */
const FLUSH_BATCH = 20;

type Frame = StatsFrame | RecordsFrame;

/** Frames of one kind on their way out: numbered, kept while they cannot be sent, oldest dropped first. */
export class Outbox<F extends Frame> {
  /** Frames sent, and dropped (buffer full), since the start. */
  sent = 0;
  dropped = 0;
  private readonly queue: F[] = [];
  private items = 0;
  private seq = 0;
  /** Dropped and not yet reported in a frame sent. */
  private unreported = 0;

  constructor(
    private readonly maxFrames: number,
    private readonly maxItems: number,
    private readonly itemsOf: (frame: F) => number,
  ) {}

  get buffered(): number {
    return this.queue.length;
  }

  nextSeq(): number {
    return ++this.seq;
  }

  add(frame: F): void {
    this.queue.push(frame);
    this.items += this.itemsOf(frame);
    while (this.queue.length > this.maxFrames || (this.items > this.maxItems && this.queue.length > 1)) {
      this.items -= this.itemsOf(this.queue.shift()!);
      this.unreported++;
      this.dropped++;
    }
  }

  /** Sends up to `max` frames in order while `send` takes them: EMPTY, MORE (frames left) or REFUSED. */
  flush(send: (frame: F) => boolean, max: number): number {
    for (let n = 0; n < max && this.queue.length > 0; n++) {
      const frame = this.queue[0]!;
      frame.dropped = this.unreported;
      if (!send(frame)) return REFUSED;
      this.queue.shift();
      this.items -= this.itemsOf(frame);
      this.unreported = 0;
      this.sent++;
    }
    return this.queue.length > 0 ? MORE : EMPTY;
  }
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
}

export class Reporter {
  readonly stats = new Outbox<StatsFrame>(MAX_BUFFERED_FRAMES, MAX_BUFFERED_ENTRIES, (f) => f.entries.length);
  readonly records = new Outbox<RecordsFrame>(MAX_BUFFERED_FRAMES, MAX_BUFFERED_RECORDS, (f) => f.records.length);
  private timer: NodeJS.Timeout | undefined;
  private pumping: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly options: ReporterOptions) {}

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

  /** Drains the ended seconds and the records kept into frames, and sends what can be sent. */
  tick(): void {
    try {
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

  /** Sends the queued frames in order; called on every tick and when the session is established. */
  flush(): void {
    if (this.pumping !== undefined) return;
    this.pump();
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
