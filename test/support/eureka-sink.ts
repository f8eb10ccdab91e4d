import type { Registration, RegistrationSink, SourceLogger } from '../../src/registry-bridge/registration.js';

/** Every call a source made, in order, with the time it arrived. */
export type SinkEvent = { at: number } & (
  | { type: 'upsert'; registration: Registration }
  | { type: 'remove'; source: string; key: string }
  | { type: 'replaceAll'; source: string; registrations: Registration[] }
  | { type: 'sourceHealth'; source: string; health: { reachable: boolean; error?: string } }
  | { type: 'badInput'; source: string; kind: string; detail: string }
);

type EventOf<T extends SinkEvent['type']> = Extract<SinkEvent, { type: T }>;

/** A sink that records calls and keeps what a catalog would hold, for assertions. */
export class RecordingSink implements RegistrationSink {
  readonly events: SinkEvent[] = [];
  readonly current = new Map<string, Registration>();

  upsert(registration: Registration): void {
    this.events.push({ at: Date.now(), type: 'upsert', registration });
    this.current.set(registration.key, registration);
  }

  remove(source: string, key: string): void {
    this.events.push({ at: Date.now(), type: 'remove', source, key });
    this.current.delete(key);
  }

  replaceAll(source: string, registrations: Registration[]): void {
    this.events.push({ at: Date.now(), type: 'replaceAll', source, registrations });
    this.current.clear();
    for (const registration of registrations) this.current.set(registration.key, registration);
  }

  sourceHealth(source: string, health: { reachable: boolean; error?: string }): void {
    this.events.push({ at: Date.now(), type: 'sourceHealth', source, health });
  }

  badInput(source: string, kind: string, detail: string): void {
    this.events.push({ at: Date.now(), type: 'badInput', source, kind, detail });
  }

  of<T extends SinkEvent['type']>(type: T, from = 0): EventOf<T>[] {
    return this.events.slice(from).filter((event): event is EventOf<T> => event.type === type);
  }

  /** The first event of `type` at index `from` or later that `accept` takes; fails after `timeoutMs`. */
  async next<T extends SinkEvent['type']>(
    type: T,
    accept: (event: EventOf<T>) => boolean,
    { from = 0, timeoutMs = 10_000 }: { from?: number; timeoutMs?: number } = {},
  ): Promise<EventOf<T>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.of(type, from).find(accept);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no ${type} event accepted within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  details: object;
  message: string;
}

export class RecordingLogger implements SourceLogger {
  readonly lines: LogLine[] = [];
  info(details: object, message: string): void {
    this.lines.push({ level: 'info', details, message });
  }
  warn(details: object, message: string): void {
    this.lines.push({ level: 'warn', details, message });
  }
  error(details: object, message: string): void {
    this.lines.push({ level: 'error', details, message });
  }
}
