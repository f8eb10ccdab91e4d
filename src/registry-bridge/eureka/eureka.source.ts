import type { InstanceStatus, Registration, RegistrationSink, RegistrySource, SourceLogger } from '../registration.js';
import { EurekaHttpClient, EurekaHttpError } from './eureka-http.js';
import { readDelta, readFullRegistry, reconcileHashCode, type EurekaProblem } from './eureka-json.js';

export interface EurekaSourceOptions {
  /** Base URLs of one Eureka cluster's peers, e.g. `http://eureka-1:8761/eureka`; failover in order. */
  urls: string[];
  /** Time between the end of one fetch and the start of the next. Default 30 s, as Eureka clients. */
  fetchIntervalMs?: number;
  /** Bound of one request to one URL. Default 5 s. */
  requestTimeoutMs?: number;
  logger?: SourceLogger;
  /** The source's id in registrations and sink calls. Default `eureka`. */
  id?: string;
}

/** What the source has done, for tests and metrics. */
export interface EurekaSourceStats {
  fullFetches: number;
  deltaFetches: number;
  /** Deltas after which the local copy did not match the server's `apps__hashcode`. */
  hashMismatches: number;
  /** Fetch cycles in which no URL answered. */
  failedFetches: number;
}

/**
 * Reads Spring Cloud instances from Eureka: one full fetch, then a delta every interval. A delta
 * holds only the instances changed in the server's last three minutes, so after applying it the
 * source recomputes Eureka's reconcile hash code over its own copy and fetches the whole registry
 * when it differs from the server's `apps__hashcode` (what Eureka's own DiscoveryClient does).
 *
 * Fetches never overlap: the next one is scheduled when the previous one ends. When no URL answers,
 * the source reports itself unreachable and keeps its entries (the catalog marks them stale), keeps
 * trying every interval, and starts again with a full fetch once a URL answers.
 */
export class EurekaSource implements RegistrySource {
  readonly id: string;
  /** Shared with the native controls, so that reads and writes prefer the same peer. */
  readonly client: EurekaHttpClient;
  readonly stats: EurekaSourceStats = { fullFetches: 0, deltaFetches: 0, hashMismatches: 0, failedFetches: 0 };
  private readonly intervalMs: number;

  private sink?: RegistrationSink;
  private stopped = true;
  private timer?: NodeJS.Timeout;
  private inFlight?: { done: Promise<void>; abort: AbortController };
  private reachable: boolean | undefined;
  private needFullFetch = true;
  /** What the sink holds, by key: unchanged registrations from a delta are not sent again. */
  private readonly registrations = new Map<string, Registration>();
  /** Status of every instance Eureka reported, readable or not: the local side of the hash code. */
  private readonly census = new Map<string, { readonly status: InstanceStatus }>();
  /** Problems reported already: a delta repeats an instance for minutes, a full fetch all of them. */
  private reportedProblems = new Set<string>();

  constructor(private readonly options: EurekaSourceOptions) {
    this.id = options.id ?? 'eureka';
    this.intervalMs = options.fetchIntervalMs ?? 30_000;
    this.client = new EurekaHttpClient({
      urls: options.urls,
      ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
      ...(options.logger ? { logger: options.logger } : {}),
    });
  }

  /**
   * Runs the first full fetch and resolves when it is done, whether Eureka answered or not (an
   * unreachable Eureka is reported to the sink, not thrown), then keeps fetching every interval.
   */
  start(sink: RegistrationSink): Promise<void> {
    if (!this.stopped) return Promise.reject(new Error(`${this.id} is already started`));
    this.sink = sink;
    this.stopped = false;
    this.needFullFetch = true;
    this.reachable = undefined;
    return this.runCycle();
  }

  /** Ends the loop; a fetch in flight is aborted and awaited, and nothing reaches the sink after. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const inFlight = this.inFlight;
    inFlight?.abort.abort(new Error(`${this.id} stopped`));
    await inFlight?.done;
  }

  // ---- loop ---------------------------------------------------------------------------------------

  private runCycle(): Promise<void> {
    const abort = new AbortController();
    const done = this.fetchOnce(abort.signal).finally(() => {
      this.inFlight = undefined;
      if (!this.stopped) this.timer = setTimeout(() => void this.runCycle(), this.intervalMs);
    });
    this.inFlight = { done, abort };
    return done;
  }

  private async fetchOnce(signal: AbortSignal): Promise<void> {
    try {
      if (this.needFullFetch) await this.fullFetch(signal);
      else await this.deltaFetch(signal);
      this.setReachable(true);
    } catch (error) {
      if (this.stopped) return;
      this.needFullFetch = true;
      if (error instanceof EurekaHttpError) {
        this.stats.failedFetches += 1;
        this.setReachable(false, error.message);
      } else {
        // Not Eureka's fault (a sink that threw): start over from a full fetch, but stay reachable.
        this.options.logger?.error({ source: this.id, error: (error as Error).message }, 'Eureka source failed to apply a fetch');
      }
    }
  }

  private setReachable(reachable: boolean, error?: string): void {
    if (this.stopped || this.reachable === reachable) return;
    const recovered = reachable && this.reachable === false;
    this.reachable = reachable;
    if (!reachable) this.options.logger?.warn({ source: this.id, error }, 'Eureka unreachable; entries kept as stale, retrying');
    else if (recovered) this.options.logger?.info({ source: this.id, url: this.client.preferredUrl }, 'Eureka reachable again');
    this.sink?.sourceHealth(this.id, reachable ? { reachable } : { reachable, ...(error ? { error } : {}) });
  }

  // ---- fetches ------------------------------------------------------------------------------------

  private async fullFetch(signal: AbortSignal): Promise<void> {
    const { url, applications } = await this.client.fetchApps(signal);
    if (this.stopped) return;
    this.stats.fullFetches += 1;
    const full = readFullRegistry(applications, this.id);
    this.registrations.clear();
    this.census.clear();
    for (const registration of full.registrations) {
      this.registrations.set(registration.key, registration);
      this.census.set(registration.key, registration);
    }
    for (const problem of full.problems)
      if (problem.key && problem.status) this.census.set(problem.key, { status: problem.status });
    this.sink?.replaceAll(this.id, full.registrations);
    this.needFullFetch = false;
    this.options.logger?.info(
      { source: this.id, url, instances: full.registrations.length, problems: full.problems.length },
      'Eureka full fetch',
    );
    const previous = this.reportedProblems;
    this.reportedProblems = new Set();
    this.report(full.problems, previous);

    const local = reconcileHashCode(this.census.values());
    if (full.hashCode !== undefined && full.hashCode !== local) {
      // Part of the registry could not be read at all: deltas will not reconcile either.
      this.options.logger?.warn(
        { source: this.id, url, local, remote: full.hashCode },
        'Eureka full registry does not match its own hash code',
      );
    }
  }

  private async deltaFetch(signal: AbortSignal): Promise<void> {
    const answer = await this.client.fetchDelta(signal);
    if (this.stopped) return;
    if (!answer) {
      this.options.logger?.info({ source: this.id }, 'Eureka refuses deltas (HTTP 403): full fetch');
      return this.fullFetch(signal);
    }
    this.stats.deltaFetches += 1;
    const delta = readDelta(answer.applications, this.id);
    for (const change of delta.changes) {
      if (change.action === 'DELETED') {
        this.census.delete(change.key);
        if (this.registrations.delete(change.key)) this.sink?.remove(this.id, change.key);
        continue;
      }
      const { registration } = change;
      this.census.set(registration.key, registration);
      const known = this.registrations.get(registration.key);
      if (known && sameRegistration(known, registration)) continue;
      this.registrations.set(registration.key, registration);
      this.sink?.upsert(registration);
    }
    // An instance that became unreadable keeps its last good registration but counts as it is now.
    for (const problem of delta.problems)
      if (problem.key && problem.status) this.census.set(problem.key, { status: problem.status });
    this.report(delta.problems, this.reportedProblems);

    const local = reconcileHashCode(this.census.values());
    if (delta.hashCode !== local) {
      this.stats.hashMismatches += 1;
      this.options.logger?.info(
        { source: this.id, url: answer.url, local, remote: delta.hashCode ?? null },
        'Eureka delta does not reconcile with the local copy: full fetch',
      );
      await this.fullFetch(signal);
    }
  }

  /** Sends problems not reported before to the sink and remembers them in `seen`. */
  private report(problems: EurekaProblem[], seen: Set<string>): void {
    for (const { kind, detail } of problems) {
      const id = `${kind}\n${detail}`;
      if (!seen.has(id)) this.sink?.badInput(this.id, kind, detail);
      this.reportedProblems.add(id);
    }
  }
}

function sameRegistration(a: Registration, b: Registration): boolean {
  const { metadata: metadataA, ...restA } = a;
  const { metadata: metadataB, ...restB } = b;
  const entriesA = Object.entries(metadataA);
  return (
    JSON.stringify(restA) === JSON.stringify(restB) &&
    entriesA.length === Object.keys(metadataB).length &&
    entriesA.every(([name, value]) => metadataB[name] === value)
  );
}
