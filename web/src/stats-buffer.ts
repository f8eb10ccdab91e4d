import { onLive } from './live';
import { Store } from './store';
import type { LiveSecond, SeriesPoint, Summary } from './types';

/**
 * The last five minutes of live per-second statistics, per application, from the `stats` socket
 * events, kept from login on so the Traffic screen has a full window when it opens. A second sent
 * again (a late frame, higher `revision`) replaces the one held. Compact numbers only.
 */

export const WINDOW_SECONDS = 300;

export interface Compact {
  calls: number;
  qps: number;
  errors: number;
  /** limited + broken */
  rejected: number;
  degraded: number;
  p50: number;
  p90: number;
  p99: number;
}

export interface LivePoint {
  /** Epoch seconds. */
  s: number;
  revision: number;
  instances: number;
  inbound: Compact;
  outbound: Compact;
}

const compact = (x: Summary | undefined): Compact => ({
  calls: x?.calls ?? 0,
  qps: x?.qps ?? x?.calls ?? 0,
  errors: x?.errors ?? 0,
  rejected: (x?.limited ?? 0) + (x?.broken ?? 0),
  degraded: x?.degraded ?? 0,
  p50: x?.p50 ?? 0,
  p90: x?.p90 ?? 0,
  p99: x?.p99 ?? 0,
});

/** Per application: points sorted by second. */
const buffers = new Map<string, LivePoint[]>();
let newest = 0;
/** Wall clock when `newest` last advanced: the live edge moves on with the local clock between seconds. */
let newestAt = 0;

/** Bumped at most once a second when new data arrived. */
export const liveVersion = new Store(0);
let notifyTimer: ReturnType<typeof setTimeout> | undefined;
function notify(): void {
  if (notifyTimer) return;
  notifyTimer = setTimeout(() => {
    notifyTimer = undefined;
    trim();
    liveVersion.update((n) => n + 1);
  }, 1000);
}

function trim(): void {
  const horizon = newest - WINDOW_SECONDS;
  for (const [app, points] of buffers) {
    let drop = 0;
    while (drop < points.length && points[drop]!.s <= horizon) drop++;
    if (drop === points.length) buffers.delete(app);
    else if (drop > 0) points.splice(0, drop);
  }
}

export function addSecond(second: LiveSecond): void {
  if (!second || typeof second.application !== 'string' || typeof second.t !== 'number') return;
  const s = Math.floor(second.t / 1000);
  if (s <= newest - WINDOW_SECONDS) return;
  if (s > newest) {
    newest = s;
    newestAt = Date.now();
  }
  const point: LivePoint = {
    s,
    revision: second.revision ?? 0,
    instances: second.instances ?? 0,
    inbound: compact(second.inbound),
    outbound: compact(second.outbound),
  };
  let points = buffers.get(second.application);
  if (!points) buffers.set(second.application, (points = []));
  // usually the newest: search from the end
  let i = points.length - 1;
  while (i >= 0 && points[i]!.s > s) i--;
  if (i >= 0 && points[i]!.s === s) {
    if (points[i]!.revision <= point.revision) points[i] = point;
  } else {
    points.splice(i + 1, 0, point);
  }
  notify();
}

const ZERO: Compact = { calls: 0, qps: 0, errors: 0, rejected: 0, degraded: 0, p50: 0, p90: 0, p99: 0 };

/**
 * Fills the seconds the buffer does not hold yet from a stored 1 s series (the minutes before the
 * page opened). Such points have revision −1: any live event for the second replaces them.
 */
export function backfill(application: string, direction: 'inbound' | 'outbound', series: readonly SeriesPoint[]): void {
  let points = buffers.get(application);
  let changed = false;
  for (const p of series) {
    if (!p.calls) continue;
    const s = Math.floor(p.t / 1000);
    if (s > newest) {
      newest = s;
      newestAt = Date.now();
    }
    if (s <= newest - WINDOW_SECONDS) continue;
    if (!points) buffers.set(application, (points = []));
    let i = points.length - 1;
    while (i >= 0 && points[i]!.s > s) i--;
    const existing = i >= 0 && points[i]!.s === s ? points[i]! : undefined;
    if (existing && existing.revision >= 0) continue;
    const value = compact(p);
    if (existing) existing[direction] = value;
    else
      points.splice(i + 1, 0, {
        s,
        revision: -1,
        instances: 0,
        inbound: direction === 'inbound' ? value : ZERO,
        outbound: direction === 'outbound' ? value : ZERO,
      });
    changed = true;
  }
  if (changed) notify();
}

export function livePoints(application: string): readonly LivePoint[] {
  return buffers.get(application) ?? [];
}

export function liveApplications(): string[] {
  return [...buffers.keys()].sort();
}

export function newestSecond(): number {
  return newest;
}

/** The right edge of the live window in the agents' clock (epoch seconds), advancing when no data comes. */
export function liveEdge(now = Date.now()): number {
  if (newest === 0) return now / 1000;
  return newest + Math.max(0, (now - newestAt) / 1000);
}

export interface LiveTotals {
  application: string;
  instances: number;
  /** Averages over the last `seconds` seconds held. */
  qps: number;
  errors: number;
  rejected: number;
  errorRate: number;
  p99: number;
  lastSecond: number;
}

/** Per application over the last `seconds`: the figures of the live table. */
export function liveTotals(direction: 'inbound' | 'outbound', seconds = 10): LiveTotals[] {
  const out: LiveTotals[] = [];
  const from = newest - seconds;
  for (const [application, points] of buffers) {
    let calls = 0;
    let errors = 0;
    let rejected = 0;
    let p99 = 0;
    let instances = 0;
    let last = 0;
    for (let i = points.length - 1; i >= 0 && points[i]!.s > from; i--) {
      const c = points[i]![direction];
      calls += c.calls;
      errors += c.errors;
      rejected += c.rejected;
      if (c.p99 > p99) p99 = c.p99;
      if (points[i]!.s > last) {
        last = points[i]!.s;
        instances = points[i]!.instances;
      }
    }
    out.push({
      application,
      instances,
      qps: calls / seconds,
      errors: errors / seconds,
      rejected: rejected / seconds,
      errorRate: calls > 0 ? errors / calls : 0,
      p99,
      lastSecond: last || (points.at(-1)?.s ?? 0),
    });
  }
  return out;
}

let started = false;
export function startStatsBuffer(): void {
  if (started) return;
  started = true;
  onLive('stats', addSecond);
}

export function clearStatsBuffer(): void {
  buffers.clear();
  newest = 0;
  liveVersion.update((n) => n + 1);
}
