/**
 * The agent's own log: JSON lines on the application's stderr, each prefixed with `[steward-agent]`
 * so they stand out among the application's lines. Writing a log line never throws into the app.
 */

export const LOG_LEVELS = ['silent', 'error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const PREFIX = '[steward-agent] ';

export class Logger {
  private readonly threshold: number;

  constructor(level: LogLevel = 'warn') {
    this.threshold = LOG_LEVELS.indexOf(level);
  }

  enabled(level: Exclude<LogLevel, 'silent'>): boolean {
    return LOG_LEVELS.indexOf(level) <= this.threshold;
  }

  error(msg: string, fields?: Record<string, unknown>): void {
    this.write('error', msg, fields);
  }

  warn(msg: string, fields?: Record<string, unknown>): void {
    this.write('warn', msg, fields);
  }

  info(msg: string, fields?: Record<string, unknown>): void {
    this.write('info', msg, fields);
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.write('debug', msg, fields);
  }

  private write(level: Exclude<LogLevel, 'silent'>, msg: string, fields: Record<string, unknown> | undefined): void {
    if (!this.enabled(level)) return;
    try {
      process.stderr.write(`${PREFIX}${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
    } catch {
      // A closed or broken stderr must not become the application's problem.
    }
  }
}

export function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Internal errors of the interception layer. Each one lets the call through unguarded; they are
 * counted, and logged (debug) once per kind so a fault on every request cannot flood the log.
 */
export class Faults {
  count = 0;
  private readonly logged = new Set<string>();

  constructor(private readonly log: Logger) {}

  record(kind: string, error: unknown): void {
    this.count++;
    if (this.logged.has(kind)) return;
    this.logged.add(kind);
    this.log.debug('internal error; the call went through unguarded', { kind, error: errorText(error) });
  }
}
