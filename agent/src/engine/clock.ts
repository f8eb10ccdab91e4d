import { type Clock } from './types.js';

/**
 * The agent's clock: integer monotonic milliseconds, refreshed by a 1 ms timer so that deciding a
 * call reads a field instead of calling performance.now(). The timer is unref'd: it never keeps
 * the application's process alive.
 */
export class TickerClock implements Clock {
  now = Math.floor(performance.now());
  private timer: ReturnType<typeof setInterval> | undefined;

  start(): this {
    if (this.timer === undefined) {
      this.now = Math.floor(performance.now());
      this.timer = setInterval(() => {
        this.now = Math.floor(performance.now());
      }, 1);
      this.timer.unref();
    }
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** A clock tests set by hand. */
export class ManualClock implements Clock {
  constructor(public now = 0) {}

  advance(ms: number): void {
    this.now += ms;
  }
}
