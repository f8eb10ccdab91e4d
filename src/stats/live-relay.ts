import { Kafka, logLevel } from 'kafkajs';
import { filter, type Observable, Subject, type Subscription } from 'rxjs';
import { z } from 'zod';
import { KafkaBroadcast } from '../common/kafka-broadcast.js';
import type { LiveSecond, LiveSeconds } from './live-seconds.js';

const Count = z.number().int().min(0);
const Measure = z.number().min(0);

const SummarySchema = z.object({
  calls: Count,
  successes: Count,
  errors: Count,
  limited: Count,
  broken: Count,
  degraded: Count,
  slow: Count,
  qps: Measure,
  errorRate: Measure,
  avgMs: Measure,
  maxMs: Measure,
  p50: Measure,
  p90: Measure,
  p99: Measure,
});

const LiveSecondSchema = z.object({
  application: z.string().min(1).max(200),
  t: z.number().int(),
  instances: Count,
  inbound: SummarySchema,
  outbound: SummarySchema,
  dropped: Count,
  revision: Count,
});

/** Seconds per message: a few hundred KiB, below Kafka's 1 MB message limit. */
const MAX_BATCH = 1_000;

/** One message of the live topic: seconds an aggregator settled. */
export const LiveSecondsMessage = z.object({ v: z.literal(1), seconds: z.array(LiveSecondSchema).max(MAX_BATCH) });
export type LiveSecondsMessage = z.output<typeof LiveSecondsMessage>;

/** Seconds wait this long to go out together. */
const FLUSH_MS = 250;
/** Seconds held while Kafka is slow or away; the oldest go first (live seconds are best-effort). */
const MAX_PENDING = 20_000;

export interface LiveRelayOptions {
  brokers: string[];
  clientId: string;
  /** `LIVE_TOPIC`, default `steward.live.v1`. */
  topic: string;
  warn: (details: object, message: string) => void;
}

/**
 * The live seconds of every aggregator on every server: an aggregator (in a server or its own
 * process) publishes what its LiveSeconds settles to a Kafka topic; each server reads the whole
 * topic, so its dashboards and `/api/stats/live` see every application, whichever aggregator owns
 * its partition. Best-effort, like the seconds themselves: what Kafka cannot take in time is dropped.
 */
export class LiveRelay {
  private readonly broadcast: KafkaBroadcast<LiveSecondsMessage>;
  private readonly subject = new Subject<LiveSecond>();
  private readonly pending: LiveSecond[] = [];
  private source?: Subscription;
  private timer?: NodeJS.Timeout;
  private sending = false;
  private failing = false;

  constructor(private readonly options: LiveRelayOptions) {
    this.broadcast = new KafkaBroadcast({
      kafka: new Kafka({ clientId: `${options.clientId}-live`, brokers: options.brokers, logLevel: logLevel.NOTHING }),
      topic: options.topic,
      partitions: 1,
      groupPrefix: 'steward-live',
      schema: LiveSecondsMessage,
      onMessage: (message) => {
        for (const second of message.seconds) this.subject.next(second);
      },
      onMalformed: (reason) => options.warn({ reason }, 'malformed live seconds message skipped'),
      onConsumerError: (error) => options.warn({ err: error }, 'consuming live seconds from Kafka failed; retrying'),
    });
  }

  /** Publishes every second `live` settles (a process that aggregates). */
  publish(live: LiveSeconds): void {
    this.source ??= live.stream().subscribe((second) => {
      if (this.pending.length >= MAX_PENDING) this.pending.shift();
      this.pending.push(second);
      this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS);
    });
  }

  /** Reads every aggregator's seconds (a server). */
  start(): void {
    this.broadcast.start();
  }

  /** Every aggregator's settled seconds, of one application or of all. */
  stream(application?: string): Observable<LiveSecond> {
    const all = this.subject.asObservable();
    return application === undefined ? all : all.pipe(filter((s) => s.application === application));
  }

  /** Ends the streams (open ones would keep an HTTP server from closing). */
  close(): void {
    this.subject.complete();
  }

  async stop(): Promise<void> {
    this.source?.unsubscribe();
    clearTimeout(this.timer);
    await this.flush();
    this.subject.complete();
    await this.broadcast.stop();
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    if (this.sending || this.pending.length === 0) return;
    this.sending = true;
    const seconds = this.pending.splice(0, this.pending.length);
    try {
      const messages: { key: string; value: LiveSecondsMessage }[] = [];
      for (let i = 0; i < seconds.length; i += MAX_BATCH)
        messages.push({ key: 'live', value: { v: 1, seconds: seconds.slice(i, i + MAX_BATCH) } });
      await this.broadcast.send(messages);
      this.failing = false;
    } catch (error) {
      if (!this.failing)
        this.options.warn({ err: error }, 'publishing live seconds to Kafka failed; they are dropped until it works');
      this.failing = true;
    } finally {
      this.sending = false;
      if (this.pending.length > 0) this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS);
    }
  }
}
