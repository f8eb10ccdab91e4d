import type { Consumer, ConsumerConfig, ConsumerRunConfig, ConsumerSubscribeTopics, Kafka } from 'kafkajs';

const BACKOFF_MS = [500, 1_000, 2_000, 5_000, 10_000];

export interface SupervisedConsumerOptions {
  kafka: Kafka;
  config: ConsumerConfig;
  /** Before each attempt, e.g. creating the topic (brokers may not auto-create). */
  prepare: () => Promise<unknown>;
  subscribe: ConsumerSubscribeTopics;
  run: ConsumerRunConfig;
  /** Called with each new consumer before it connects: for listeners on its events. */
  attach?: (consumer: Consumer) => void;
  /** An attempt failed; the consumer is recreated after a backoff (0.5 s, growing to 10 s). */
  onError: (error: unknown) => void;
  /** A consumer ended (crashed for good, failed to start, or stopped). */
  onEnded?: () => void;
}

/**
 * A Kafka consumer kept running until `stop`: recreated after any failure (a broker away at start,
 * a crash kafkajs does not restart itself), with backoff. Kafka being away never fails the caller.
 */
export class SupervisedConsumer {
  private consumer?: Consumer;
  private stopped = false;
  private supervisor?: Promise<void>;
  private wake?: () => void;

  constructor(private readonly options: SupervisedConsumerOptions) {}

  start(): void {
    this.supervisor ??= this.supervise();
  }

  /** Leaves the group within a few seconds (a rebalance in progress is not waited for longer). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    const bounded = (work: Promise<unknown> | undefined, ms: number) =>
      Promise.race([work?.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
    await bounded(this.consumer?.disconnect(), 3_000);
    await bounded(this.supervisor, 1_000);
  }

  private async supervise(): Promise<void> {
    const { kafka, config, prepare, subscribe, run, attach, onError, onEnded } = this.options;
    let failures = 0;
    while (!this.stopped) {
      const consumer = kafka.consumer(config);
      this.consumer = consumer;
      try {
        await prepare();
        const ended = new Promise<void>((resolve) => {
          this.wake = resolve;
          consumer.on(consumer.events.CRASH, ({ payload }) => {
            if (!payload.restart) resolve();
          });
        });
        attach?.(consumer);
        await consumer.connect();
        await consumer.subscribe(subscribe);
        await consumer.run(run);
        failures = 0;
        await ended;
      } catch (error) {
        if (!this.stopped) onError(error);
        failures += 1;
      }
      onEnded?.();
      await consumer.disconnect().catch(() => undefined);
      if (!this.stopped && failures > 0) await this.sleep(BACKOFF_MS[Math.min(failures - 1, BACKOFF_MS.length - 1)]!);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => (clearTimeout(timer), resolve());
    });
  }
}
