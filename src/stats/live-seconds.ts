import { filter, type Observable, Subject } from 'rxjs';
import { Accumulator, type StatsEntry, type Summary, summarize } from './rollup.js';

/** One second of one application, all its instances merged, as the dashboard's live view gets it. */
export interface LiveSecond {
  application: string;
  /** Epoch ms of the second. */
  t: number;
  /** Instances whose frame for this second has arrived so far. */
  instances: number;
  inbound: Summary;
  outbound: Summary;
  dropped: number;
  /** 0 for the first emission of a second; later ones (late frames) replace it with bigger totals. */
  revision: number;
}

interface Pending {
  application: string;
  second: number;
  firstAt: number;
  changedAt: number;
  inbound: Accumulator;
  outbound: Accumulator;
  instances: Set<string>;
  dropped: number;
  revision: number;
  /** Changed since last emitted. */
  changed: boolean;
}

/**
 * Merges the facts this process's aggregator stores (new ones only, never a redelivered one) per
 * application and second, and emits each second once it has settled (no frame for `settleMs`),
 * then again, with a higher revision, if a late frame changes it within `keepMs`.
 */
export class LiveSeconds {
  private readonly pending = new Map<string, Pending>();
  private readonly subject = new Subject<LiveSecond>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly settleMs = 1_000,
    private readonly keepMs = 15_000,
    private readonly maxPending = 100_000,
  ) {}

  start(intervalMs = 250): void {
    this.timer ??= setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.subject.complete();
  }

  add(
    fact: { application: string; instanceId: string; second: number; dropped: number; entries: readonly StatsEntry[] },
    now = Date.now(),
  ): void {
    const key = `${fact.application}:${fact.second}`;
    let slot = this.pending.get(key);
    if (!slot) {
      if (this.pending.size >= this.maxPending) return;
      slot = {
        application: fact.application,
        second: fact.second,
        firstAt: now,
        changedAt: now,
        inbound: new Accumulator(),
        outbound: new Accumulator(),
        instances: new Set(),
        dropped: 0,
        revision: -1,
        changed: true,
      };
      this.pending.set(key, slot);
    }
    slot.instances.add(fact.instanceId);
    slot.dropped += fact.dropped;
    for (const entry of fact.entries) (entry.direction === 'inbound' ? slot.inbound : slot.outbound).add(entry);
    slot.changed = true;
    slot.changedAt = now;
  }

  tick(now = Date.now()): void {
    for (const [key, slot] of this.pending) {
      if (slot.changed && now - slot.changedAt >= this.settleMs) {
        slot.changed = false;
        slot.revision += 1;
        this.subject.next({
          application: slot.application,
          t: slot.second * 1_000,
          instances: slot.instances.size,
          inbound: summarize(slot.inbound, 1),
          outbound: summarize(slot.outbound, 1),
          dropped: slot.dropped,
          revision: slot.revision,
        });
      }
      if (!slot.changed && now - slot.firstAt >= this.keepMs) this.pending.delete(key);
    }
  }

  /** Every settled second, of one application or of all. */
  stream(application?: string): Observable<LiveSecond> {
    const all = this.subject.asObservable();
    return application === undefined ? all : all.pipe(filter((s) => s.application === application));
  }
}
