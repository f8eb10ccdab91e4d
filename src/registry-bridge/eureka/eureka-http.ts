import { deadline } from '../../common/deadline.js';
import type { SourceLogger } from '../registration.js';
import { parseApplicationsBody, type EurekaApplicationsJson, type EurekaStatus } from './eureka-json.js';

/**
 * A small client of Eureka's REST API over Node's global fetch, for the bridge's reads and its
 * native controls.
 *
 * Why not eureka-js-client: it is unmaintained (last commit 2019, built on the deprecated
 * `request`), its delta mode replaces or deletes the *first* instance of an application instead of
 * the one that changed, and it never compares the server's `apps__hashcode` with its own copy, so a
 * missed change stays missed. The bridge reads the REST API directly and reconciles itself.
 *
 * Several base URLs (peers of one Eureka cluster) with failover: the URL that answered last is
 * tried first, then the others in the configured order. Each request is bounded by its own timeout.
 */

export interface EurekaHttpOptions {
  /** Base URLs including the servlet path, e.g. `http://eureka-1:8761/eureka`. */
  urls: string[];
  /** Bound of one request to one URL, body included. */
  requestTimeoutMs?: number;
  logger?: SourceLogger;
}

/** No URL gave a usable answer; the message names each URL and what went wrong there. */
export class EurekaHttpError extends Error {}

/** Eureka does not know the application or instance a control names (HTTP 404, no URL succeeded). */
export class EurekaInstanceUnknownError extends EurekaHttpError {}

export interface EurekaAnswer {
  /** The base URL that answered. */
  url: string;
  applications: EurekaApplicationsJson;
}

export class EurekaHttpClient {
  private readonly urls: string[];
  private readonly timeoutMs: number;
  private lastGood: string;

  constructor(private readonly options: EurekaHttpOptions) {
    this.urls = options.urls.map((url) => url.replace(/\/+$/, ''));
    const first = this.urls[0];
    if (first === undefined) throw new Error('Eureka: at least one URL is needed');
    this.lastGood = first;
    this.timeoutMs = options.requestTimeoutMs ?? 5_000;
  }

  /** The URL that answered last, tried first next time. */
  get preferredUrl(): string {
    return this.lastGood;
  }

  /** `GET /apps`: the whole registry. */
  fetchApps(signal?: AbortSignal): Promise<EurekaAnswer> {
    // A 403 here is a peer that does not serve reads yet (still syncing): the next URL may.
    return this.read('/apps', 'failover', signal);
  }

  /**
   * `GET /apps/delta`. `undefined` when the server refuses deltas (HTTP 403: `disable-delta`, or a
   * server still syncing from its peers): the caller then fetches the full registry, as Eureka's
   * own client does.
   */
  fetchDelta(signal?: AbortSignal): Promise<EurekaAnswer | undefined> {
    return this.read('/apps/delta', 'answer', signal);
  }

  /** `PUT /apps/{APP}/{id}/status?value=…`: Eureka reports this status whatever the instance says. */
  overrideStatus(app: string, instanceId: string, status: EurekaStatus, signal?: AbortSignal): Promise<void> {
    return this.control('PUT', app, instanceId, status, signal);
  }

  /** `DELETE /apps/{APP}/{id}/status?value=UP`: the instance's own status counts again. */
  removeStatusOverride(app: string, instanceId: string, signal?: AbortSignal): Promise<void> {
    return this.control('DELETE', app, instanceId, 'UP', signal);
  }

  // ---- internals --------------------------------------------------------------------------------

  /** The preferred URL first, then the others in their configured order. */
  private order(): string[] {
    return [this.lastGood, ...this.urls.filter((url) => url !== this.lastGood)];
  }

  private read(path: string, forbidden: 'failover', signal?: AbortSignal): Promise<EurekaAnswer>;
  private read(path: string, forbidden: 'answer', signal?: AbortSignal): Promise<EurekaAnswer | undefined>;
  private async read(path: string, forbidden: 'failover' | 'answer', signal?: AbortSignal): Promise<EurekaAnswer | undefined> {
    const failures: string[] = [];
    for (const base of this.order()) {
      const url = `${base}${path}`;
      try {
        const body = await this.exchange(url, 'GET', signal, async (res) => {
          if (res.status === 403 && forbidden === 'answer') {
            await res.body?.cancel();
            return undefined;
          }
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          if (/html/i.test(res.headers.get('content-type') ?? '')) throw new Error('answer is HTML, not JSON');
          return res.text();
        });
        if (body === undefined) return undefined;
        const applications = parseApplicationsBody(body);
        // Failures before a success are logged here; when every URL fails, the caller decides.
        if (failures.length > 0) this.options.logger?.warn({ url: base, failed: failures }, 'Eureka failover');
        this.lastGood = base;
        return { url: base, applications };
      } catch (error) {
        if (signal?.aborted) throw error;
        failures.push(`${url}: ${describeError(error)}`);
      }
    }
    throw new EurekaHttpError(`every Eureka URL failed: ${failures.join('; ')}`);
  }

  private async control(
    method: 'PUT' | 'DELETE',
    app: string,
    instanceId: string,
    value: EurekaStatus,
    signal?: AbortSignal,
  ): Promise<void> {
    const path = `/apps/${encodeURIComponent(app.toUpperCase())}/${encodeURIComponent(instanceId)}/status?value=${value}`;
    const failures: string[] = [];
    let unknown = false;
    for (const base of this.order()) {
      const url = `${base}${path}`;
      try {
        const res = await this.exchange(url, method, signal, async (res) => {
          await res.body?.cancel();
          return res;
        });
        if (res.ok) {
          this.lastGood = base;
          return;
        }
        // Another peer may know the instance already (replication lags): 404 is final only at the end.
        unknown ||= res.status === 404;
        throw new Error(`HTTP ${res.status}`);
      } catch (error) {
        if (signal?.aborted) throw error;
        failures.push(`${url}: ${describeError(error)}`);
      }
    }
    const what = `${method} ${app.toUpperCase()}/${instanceId} status=${value}`;
    if (unknown) throw new EurekaInstanceUnknownError(`${what}: instance unknown to Eureka (${failures.join('; ')})`);
    throw new EurekaHttpError(`${what} failed on every Eureka URL: ${failures.join('; ')}`);
  }

  /** One request to one URL, its body read by `consume`, all within the request timeout. */
  private async exchange<T>(
    url: string,
    method: string,
    signal: AbortSignal | undefined,
    consume: (res: Response) => Promise<T>,
  ): Promise<T> {
    const bound = deadline(this.timeoutMs, signal);
    try {
      return await consume(await fetch(url, { method, headers: { Accept: 'application/json' }, signal: bound.signal }));
    } finally {
      bound.clear();
    }
  }
}

/** fetch hides the reason of a network failure in `cause` (`ECONNREFUSED`, `ENOTFOUND`…). */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'TimeoutError') return 'timed out';
  const cause = error.cause as { code?: unknown; message?: unknown } | undefined;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : undefined;
  return detail ? `${error.message} (${detail})` : error.message;
}
