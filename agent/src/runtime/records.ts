import type { z } from 'zod';
import type { CallRecordSchema } from '../../../src/agent-protocol/messages.js';
import { INBOUND, type Answer, type Direction } from '../engine/index.js';
import type { RequestContext } from './trace.js';

/**
 * Call records (docs/agent-protocol.md "Statistics and call records"): every slow, failed or blocked
 * call, up to MAX_NOTABLE_PER_SECOND a second, and a sample of the other calls (STEWARD_RECORD_SAMPLE,
 * up to MAX_SAMPLED_PER_SECOND a second), with the request headers named in STEWARD_RECORD_HEADERS
 * as `details`. Deciding to skip a normal call costs one random number; a record is built only for
 * a call that is kept.
 */

export type CallRecord = z.output<typeof CallRecordSchema>;

export const MAX_NOTABLE_PER_SECOND = 100;
export const MAX_SAMPLED_PER_SECOND = 100;
const MAX_METHOD_CHARS = 256;
const MAX_PATH_CHARS = 2_048;
const MAX_DETAIL_CHARS = 256;

/** One call as the interception layer saw it. */
export interface CallSite {
  readonly direction: Direction;
  /** The caller (inbound) or callee (outbound); an unnamed callee's `host:port`; '' when unknown. */
  readonly remote: string;
  /** HTTP method. */
  readonly method: string;
  /** The request target: path and query. */
  readonly target: string;
  /** The request's headers: Node's incoming or outgoing headers (an object or the raw array), or a fetch Headers. */
  readonly headers: unknown;
  /** Inbound: the request's own context; outbound: the inbound request being handled, if any. */
  readonly context: RequestContext | undefined;
  /** The trace id the call carries. */
  readonly traceId: string;
}

export interface RecorderOptions {
  application: string;
  /** The share of normal calls recorded, 0–1. */
  sample: number;
  /** Lower-case header names recorded as details. */
  headers: readonly string[];
}

export class CallRecorder {
  private records: CallRecord[] = [];
  private notable = 0;
  private sampled = 0;
  /** Calls that qualified but were over the second's cap. */
  skipped = 0;

  constructor(private readonly options: RecorderOptions) {}

  /** Whether a blocked call would be kept now (so the caller builds a CallSite only then). */
  keepsBlocked(): boolean {
    if (this.notable < MAX_NOTABLE_PER_SECOND) return true;
    this.skipped++;
    return false;
  }

  /** A call completed; `at` is when it started, ms since the epoch. */
  completed(site: CallSite, error: boolean, status: number, latencyMs: number, slow: boolean, at: number): void {
    let kept: CallRecord['kept'];
    if (error || slow) {
      if (this.notable >= MAX_NOTABLE_PER_SECOND) {
        this.skipped++;
        return;
      }
      this.notable++;
      kept = error ? 'error' : 'slow';
    } else {
      const sample = this.options.sample;
      if (sample <= 0 || (sample < 1 && Math.random() >= sample)) return;
      if (this.sampled >= MAX_SAMPLED_PER_SECOND) {
        this.skipped++;
        return;
      }
      this.sampled++;
      kept = 'sampled';
    }
    this.add(site, error ? 'error' : 'success', kept, status, latencyMs, at, undefined);
  }

  /** A call the agent answered (blocked by a limit or breaker, or degraded); call keepsBlocked() first. */
  answered(site: CallSite, answer: Answer, latencyMs: number, at: number): void {
    this.notable++;
    const outcome =
      answer.reason === 'limited'
        ? 'limited'
        : answer.reason === 'breaker-open' || answer.reason === 'breaker-half-open'
          ? 'broken'
          : 'degraded';
    this.add(site, outcome, 'blocked', answer.status, latencyMs, at, answer.ruleId);
  }

  /** The records kept since the last drain; starts a new second for the caps. */
  drain(): CallRecord[] {
    const records = this.records;
    this.records = [];
    this.notable = this.sampled = 0;
    return records;
  }

  private add(
    site: CallSite,
    outcome: CallRecord['outcome'],
    kept: CallRecord['kept'],
    status: number,
    latencyMs: number,
    at: number,
    ruleId: string | undefined,
  ): void {
    const { application } = this.options;
    const inbound = site.direction === INBOUND;
    const record: CallRecord = {
      at: Math.max(0, Math.round(at)),
      traceId: site.traceId,
      direction: inbound ? 'inbound' : 'outbound',
      caller: inbound ? site.remote : application,
      callee: inbound ? application : site.remote,
      protocol: 'http',
      method: site.method.slice(0, MAX_METHOD_CHARS) || 'GET',
      path: pathOf(site.target).slice(0, MAX_PATH_CHARS),
      status: Number.isInteger(status) && status >= 0 && status <= 999 ? status : 0,
      latencyMs: Math.max(0, Math.round(latencyMs)),
      outcome,
      kept,
    };
    if (ruleId !== undefined) record.ruleId = ruleId;
    const details = this.details(site);
    if (details !== undefined) record.details = details;
    this.records.push(record);
  }

  private details(site: CallSite): Record<string, string> | undefined {
    let details: Record<string, string> | undefined;
    for (const name of this.options.headers) {
      const value = headerValue(site.headers, name) ?? (site.context ? headerValue(site.context.headers, name) : undefined);
      if (value !== undefined) (details ??= {})[name] = value.slice(0, MAX_DETAIL_CHARS);
    }
    return details;
  }
}

/** The path of a request target: without query and fragment. */
export function pathOf(target: string): string {
  let end = target.length;
  const query = target.indexOf('?');
  if (query >= 0) end = query;
  const hash = target.indexOf('#');
  if (hash >= 0 && hash < end) end = hash;
  return end === target.length ? target : target.slice(0, end);
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  if (Array.isArray(value)) return value.map(String).join(', ');
  return undefined;
}

/** A header of Node's incoming or outgoing headers (object or raw array) or of a fetch Headers; `name` lower-case. */
export function headerValue(headers: unknown, name: string): string | undefined {
  if (headers === null || typeof headers !== 'object') return undefined;
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) if (String(headers[i]).toLowerCase() === name) return text(headers[i + 1]);
    return undefined;
  }
  const record = headers as Record<string, unknown>;
  const direct = text(record[name]);
  if (direct !== undefined) return direct;
  for (const key of Object.keys(record)) if (key.toLowerCase() === name) return text(record[key]);
  return undefined;
}
