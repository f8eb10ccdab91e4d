import { Accumulator, type Direction, type Protocol, type StatsEntry, type Summary, summarize } from './rollup.js';

/**
 * The read side, pure: time series, top-N and the dependency graph computed from windows (facts,
 * minute or hour rollups, whichever resolution the query reads). Times here are epoch seconds.
 */

/** A stored window of one application at any resolution (a fact is a 1 s window). */
export interface Window {
  application: string;
  start: number;
  dropped: number;
  entries: readonly StatsEntry[];
}

export interface EntryFilter {
  direction?: Direction;
  peer?: string;
  protocol?: Protocol;
  resource?: string;
}

export function matches(entry: StatsEntry, filter: EntryFilter): boolean {
  return (
    (filter.direction === undefined || entry.direction === filter.direction) &&
    (filter.peer === undefined || entry.peer === filter.peer) &&
    (filter.protocol === undefined || entry.protocol === filter.protocol) &&
    (filter.resource === undefined || entry.resource === filter.resource)
  );
}

// ---- time series ---------------------------------------------------------------------------------

export interface SeriesPoint extends Summary {
  /** Bucket start, epoch ms. */
  t: number;
  /** Batches agents dropped in the bucket (whole application, whatever the filter). */
  dropped: number;
}

/**
 * One point per step in [from, to) (both multiples of `step`), empty buckets included, so a chart
 * needs no gap logic. Windows outside the range are ignored.
 */
export function buildSeries(
  windows: Iterable<Window>,
  range: { from: number; to: number; step: number },
  filter: EntryFilter = {},
): SeriesPoint[] {
  const { from, to, step } = range;
  const count = Math.max(0, Math.ceil((to - from) / step));
  const buckets = Array.from({ length: count }, () => ({ acc: new Accumulator(), dropped: 0 }));
  for (const window of windows) {
    if (window.start < from || window.start >= to) continue;
    const bucket = buckets[Math.floor((window.start - from) / step)]!;
    bucket.dropped += window.dropped;
    for (const entry of window.entries) if (matches(entry, filter)) bucket.acc.add(entry);
  }
  return buckets.map((b, i) => ({ t: (from + i * step) * 1_000, ...summarize(b.acc, step), dropped: b.dropped }));
}

// ---- top N ---------------------------------------------------------------------------------------

export type TopBy = 'resource' | 'peer';
export type TopMetric = 'qps' | 'errors' | 'p99';

export interface TopItem extends Summary {
  direction: Direction;
  protocol?: Protocol;
  resource?: string;
  peer?: string;
}

export function buildTop(
  windows: Iterable<Window>,
  options: { by: TopBy; metric: TopMetric; limit: number; seconds: number },
  filter: EntryFilter = {},
): TopItem[] {
  const groups = new Map<string, { head: Omit<TopItem, keyof Summary>; acc: Accumulator }>();
  for (const window of windows) {
    for (const entry of window.entries) {
      if (!matches(entry, filter)) continue;
      const head =
        options.by === 'resource'
          ? { direction: entry.direction, protocol: entry.protocol, resource: entry.resource }
          : { direction: entry.direction, peer: entry.peer };
      const key = JSON.stringify(head);
      let group = groups.get(key);
      if (!group) groups.set(key, (group = { head, acc: new Accumulator() }));
      group.acc.add(entry);
    }
  }
  const items = [...groups.entries()].map(([key, g]) => ({ key, item: { ...g.head, ...summarize(g.acc, options.seconds) } }));
  items.sort(
    (a, b) => b.item[options.metric] - a.item[options.metric] || b.item.calls - a.item.calls || (a.key < b.key ? -1 : 1),
  );
  return items.slice(0, options.limit).map((x) => x.item);
}

// ---- dependency graph ----------------------------------------------------------------------------

export interface GraphNode {
  application: string;
  /** Whether the application itself reported statistics in the range (false: only named as a peer). */
  reporting: boolean;
  /** What the application served (its inbound entries, every caller). */
  inbound: Summary;
  /** Outbound calls whose callee the agent could not name: not on any edge. */
  unknownCalleeCalls: number;
}

export interface GraphEdge extends Summary {
  caller: string;
  callee: string;
  /** Whose view the numbers are: the caller's outbound entries, or (only without those) the callee's inbound ones. */
  source: 'outbound' | 'inbound';
}

/**
 * Nodes are applications; an edge caller → callee carries the caller's outbound view of those calls
 * when the caller reported any (its agent sees limits, breakers and network failures the callee
 * never sees); only when the caller reported no outbound entry naming the callee in the range
 * (e.g. it runs no agent) does the callee's inbound view, with a known caller, stand in. One view
 * per edge, never the sum of both, so a call is counted once.
 */
export function buildGraph(windows: Iterable<Window>, seconds: number): { nodes: GraphNode[]; edges: GraphEdge[] } {
  const outbound = new Map<string, Accumulator>();
  const inbound = new Map<string, Accumulator>();
  const served = new Map<string, Accumulator>();
  const unknown = new Map<string, number>();
  const reporting = new Set<string>();
  const named = new Set<string>();
  const edgeKey = (caller: string, callee: string) => `${caller}\u0000${callee}`;
  const slot = (map: Map<string, Accumulator>, key: string) => {
    let acc = map.get(key);
    if (!acc) map.set(key, (acc = new Accumulator()));
    return acc;
  };

  for (const window of windows) {
    const app = window.application;
    reporting.add(app);
    for (const entry of window.entries) {
      if (entry.direction === 'inbound') {
        slot(served, app).add(entry);
        if (entry.peer !== '') {
          named.add(entry.peer);
          slot(inbound, edgeKey(entry.peer, app)).add(entry);
        }
      } else if (entry.peer === '') {
        unknown.set(app, (unknown.get(app) ?? 0) + entry.calls);
      } else {
        named.add(entry.peer);
        slot(outbound, edgeKey(app, entry.peer)).add(entry);
      }
    }
  }

  const edges: GraphEdge[] = [];
  for (const key of new Set([...outbound.keys(), ...inbound.keys()])) {
    const [caller, callee] = key.split('\u0000') as [string, string];
    const out = outbound.get(key);
    const view = out ?? inbound.get(key)!;
    edges.push({ caller, callee, source: out ? 'outbound' : 'inbound', ...summarize(view, seconds) });
  }
  edges.sort((a, b) => (a.caller === b.caller ? (a.callee < b.callee ? -1 : 1) : a.caller < b.caller ? -1 : 1));

  const nodes = [...new Set([...reporting, ...named])].sort().map((application) => ({
    application,
    reporting: reporting.has(application),
    inbound: summarize(served.get(application) ?? new Accumulator(), seconds),
    unknownCalleeCalls: unknown.get(application) ?? 0,
  }));
  return { nodes, edges };
}
