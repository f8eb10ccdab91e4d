import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, withQuery } from '../api';
import { type ChartSeries, TimeChart } from '../components/chart';
import { Badge, Empty, ErrorNote, Filter, ClientPager, Loading, Section, Segmented, useClientPage } from '../components/ui';
import { fmtInt, fmtMs, fmtNum, fmtPct } from '../format';
import { useApi, useNow } from '../hooks';
import { href, setQuery, useRoute } from '../router';
import {
  backfill,
  type Compact,
  liveApplications,
  liveEdge,
  livePoints,
  liveTotals,
  liveVersion,
  WINDOW_SECONDS,
} from '../stats-buffer';
import { useStore } from '../store';
import type { CatalogApplication, Page, Series, TopResult } from '../types';

type Range = 'live' | '1h' | '6h' | '24h';
type Direction = 'inbound' | 'outbound';

const RANGES: Record<Exclude<Range, 'live'>, { ms: number; step: string; stepMs: number }> = {
  '1h': { ms: 3_600_000, step: '1m', stepMs: 60_000 },
  '6h': { ms: 6 * 3_600_000, step: '5m', stepMs: 300_000 },
  '24h': { ms: 24 * 3_600_000, step: '15m', stepMs: 900_000 },
};

const COLORS = {
  qps: '#2563eb',
  errors: '#dc2626',
  rejected: '#d97706',
  degraded: '#7c3aed',
  p50: '#059669',
  p90: '#d97706',
  p99: '#dc2626',
};

const QPS_SERIES: ChartSeries[] = [{ label: 'calls/s', color: COLORS.qps, fill: true }];
const ERROR_SERIES: ChartSeries[] = [
  { label: 'errors/s', color: COLORS.errors },
  { label: 'rejected/s (limited + broken)', color: COLORS.rejected },
  { label: 'degraded/s', color: COLORS.degraded, dash: true },
];
const LATENCY_SERIES: ChartSeries[] = [
  { label: 'p50', color: COLORS.p50 },
  { label: 'p90', color: COLORS.p90 },
  { label: 'p99', color: COLORS.p99 },
];

export function TrafficScreen() {
  const { query } = useRoute();
  const app = (query.get('application') ?? query.get('app') ?? '').toLowerCase();
  const range = (query.get('range') as Range | null) ?? 'live';
  const direction = (query.get('dir') as Direction | null) ?? 'inbound';
  return (
    <div class="screen" data-testid="screen-traffic">
      <div class="screen-head">
        <h1>Traffic</h1>
        <AppPicker value={app} />
        <Segmented
          value={direction}
          testid="traffic-direction"
          options={[
            { value: 'inbound', label: 'Inbound (served)' },
            { value: 'outbound', label: 'Outbound (calls made)' },
          ]}
          onChange={(dir) => setQuery({ dir: dir === 'inbound' ? undefined : dir })}
        />
        {app && (
          <Segmented
            value={range}
            testid="traffic-range"
            options={[
              { value: 'live', label: 'Live 5 min' },
              { value: '1h', label: '1 h' },
              { value: '6h', label: '6 h' },
              { value: '24h', label: '24 h' },
            ]}
            onChange={(r) => setQuery({ range: r === 'live' ? undefined : r })}
          />
        )}
      </div>
      {app ? <AppTraffic app={app} range={range} direction={direction} /> : <LiveTable direction={direction} />}
    </div>
  );
}

function AppPicker({ value }: { value: string }) {
  const [text, setText] = useState(value);
  useEffect(() => setText(value), [value]);
  const catalog = useApi<Page<CatalogApplication>>('/api/registry/applications?pageSize=1000');
  useStore(liveVersion);
  const names = useMemo(() => {
    const set = new Set(liveApplications());
    for (const a of catalog.data?.items ?? []) set.add(a.name);
    return [...set].sort();
  }, [catalog.data, liveApplications().length]);
  const submit = (name: string) =>
    setQuery({ application: name.trim().toLowerCase() || undefined, app: undefined }, { push: true });
  return (
    <form
      class="app-picker"
      onSubmit={(e) => {
        e.preventDefault();
        submit(text);
      }}
    >
      <input
        class="input"
        list="traffic-apps"
        value={text}
        placeholder="Application…"
        data-testid="traffic-app"
        onInput={(e) => setText(e.currentTarget.value)}
        onChange={(e) => submit(e.currentTarget.value)}
      />
      <datalist id="traffic-apps">
        {names.slice(0, 2000).map((n) => (
          <option key={n} value={n} />
        ))}
      </datalist>
      {value && (
        <button
          type="button"
          class="btn btn-small"
          onClick={() => {
            setText('');
            submit('');
          }}
        >
          All applications
        </button>
      )}
    </form>
  );
}

/** Every application's last 10 seconds, from the live buffer. */
function LiveTable({ direction }: { direction: Direction }) {
  useStore(liveVersion);
  const [filter, setFilter] = useState('');
  const [sort, setSort] = useState<'qps' | 'errors' | 'p99'>('qps');
  const f = filter.trim().toLowerCase();
  const rows = liveTotals(direction, 10)
    .filter((r) => !f || r.application.includes(f))
    .sort(
      (a, b) =>
        (sort === 'qps' ? b.qps - a.qps : sort === 'errors' ? b.errors - a.errors : b.p99 - a.p99) ||
        a.application.localeCompare(b.application),
    );
  const paging = useClientPage(rows, 200, `${f}|${sort}`);
  if (liveApplications().length === 0)
    return (
      <Empty title="No live statistics yet" testid="traffic-empty">
        Agents send per-second statistics while their application handles calls; the live view starts with the first second that
        arrives, from whichever aggregator counts it. Pick an application above for its stored history (1 h, 6 h, 24 h).
      </Empty>
    );
  return (
    <Section
      title={`Live · every application · last 10 s (${direction})`}
      actions={
        <>
          <Filter value={filter} onInput={setFilter} placeholder="Filter applications…" />
          <Segmented
            value={sort}
            options={[
              { value: 'qps', label: 'by QPS' },
              { value: 'errors', label: 'by errors' },
              { value: 'p99', label: 'by p99' },
            ]}
            onChange={setSort}
          />
        </>
      }
    >
      <table class="table table-hover" data-testid="traffic-live-table">
        <thead>
          <tr>
            <th>Application</th>
            <th class="num">Instances</th>
            <th class="num">QPS</th>
            <th class="num">Errors/s</th>
            <th class="num">Error rate</th>
            <th class="num">Rejected/s</th>
            <th class="num">p99 (max)</th>
            <th>Activity (5 min)</th>
          </tr>
        </thead>
        <tbody>
          {paging.pageItems.map((r) => (
            <tr key={r.application} data-testid="traffic-live-row">
              <td>
                <a
                  class="strong"
                  href={href('/traffic', { application: r.application, dir: direction === 'inbound' ? undefined : direction })}
                >
                  {r.application}
                </a>
              </td>
              <td class="num">{r.instances}</td>
              <td class="num">{fmtNum(r.qps)}</td>
              <td class="num">{r.errors > 0 ? <span class="text-bad">{fmtNum(r.errors)}</span> : '0'}</td>
              <td class="num">{fmtPct(r.errorRate)}</td>
              <td class="num">{r.rejected > 0 ? <span class="text-warn">{fmtNum(r.rejected)}</span> : '0'}</td>
              <td class="num">{fmtMs(r.p99)}</td>
              <td>
                <Spark app={r.application} direction={direction} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <ClientPager paging={paging} />
    </Section>
  );
}

/** A tiny inline SVG of calls per second over the live window. */
function Spark({ app, direction }: { app: string; direction: Direction }) {
  const points = livePoints(app);
  if (points.length < 2) return <span class="muted small">–</span>;
  const edge = Math.floor(liveEdge());
  const from = edge - WINDOW_SECONDS;
  let max = 0;
  for (const p of points) max = Math.max(max, p[direction].calls);
  const w = 120;
  const h = 22;
  const d = points
    .map(
      (p, i) =>
        `${i === 0 ? 'M' : 'L'}${(((p.s - from) / WINDOW_SECONDS) * w).toFixed(1)},${(h - 1 - (max ? (p[direction].calls / max) * (h - 2) : 0)).toFixed(1)}`,
    )
    .join('');
  const errors = points.some((p) => p[direction].errors > 0);
  return (
    <svg class="spark" width={w} height={h} viewBox={`0 0 ${w} ${h}`} aria-hidden="true">
      <path d={d} fill="none" stroke={errors ? COLORS.errors : COLORS.qps} stroke-width="1.2" />
    </svg>
  );
}

interface ChartData {
  qps: (number | null)[][];
  errors: (number | null)[][];
  latency: (number | null)[][];
  xRange: [number, number];
  totals: { calls: number; errors: number; rejected: number; seconds: number; p99: number };
}

function liveChartData(app: string, direction: Direction): ChartData {
  const points = livePoints(app);
  const edge = Math.floor(liveEdge()) - 1;
  const from = edge - WINDOW_SECONDS + 1;
  const xs: number[] = [];
  const qps: (number | null)[] = [];
  const errors: (number | null)[] = [];
  const rejected: (number | null)[] = [];
  const degraded: (number | null)[] = [];
  const p50: (number | null)[] = [];
  const p90: (number | null)[] = [];
  const p99: (number | null)[] = [];
  const bySecond = new Map<number, Compact>();
  for (const p of points) bySecond.set(p.s, p[direction]);
  const first = points[0]?.s ?? Infinity;
  const last = points.at(-1)?.s ?? -Infinity;
  const totals = { calls: 0, errors: 0, rejected: 0, seconds: 0, p99: 0 };
  for (let s = from; s <= edge; s++) {
    xs.push(s);
    const c = bySecond.get(s);
    const inside = s >= first && s <= last;
    // seconds without calls send no frame: 0 between data, nothing outside it
    qps.push(c ? c.calls : inside ? 0 : null);
    errors.push(c ? c.errors : inside ? 0 : null);
    rejected.push(c ? c.rejected : inside ? 0 : null);
    degraded.push(c ? c.degraded : inside ? 0 : null);
    const hasLatency = c && c.calls > 0 && (c.p50 > 0 || c.p99 > 0);
    p50.push(hasLatency ? c.p50 : null);
    p90.push(hasLatency ? c.p90 : null);
    p99.push(hasLatency ? c.p99 : null);
    if (c) {
      totals.calls += c.calls;
      totals.errors += c.errors;
      totals.rejected += c.rejected;
      totals.p99 = Math.max(totals.p99, c.p99);
    }
    if (inside) totals.seconds++;
  }
  return {
    qps: [xs, qps],
    errors: [xs, errors, rejected, degraded],
    latency: [xs, p50, p90, p99],
    xRange: [from, edge],
    totals,
  };
}

function seriesChartData(series: Series): ChartData {
  const xs: number[] = [];
  const qps: (number | null)[] = [];
  const errors: (number | null)[] = [];
  const rejected: (number | null)[] = [];
  const degraded: (number | null)[] = [];
  const p50: (number | null)[] = [];
  const p90: (number | null)[] = [];
  const p99: (number | null)[] = [];
  const totals = { calls: 0, errors: 0, rejected: 0, seconds: 0, p99: 0 };
  for (const p of series.points) {
    xs.push(p.t / 1000);
    qps.push(p.qps);
    errors.push(p.errors / series.step);
    rejected.push((p.limited + p.broken) / series.step);
    degraded.push(p.degraded / series.step);
    const has = p.calls > 0;
    p50.push(has ? p.p50 : null);
    p90.push(has ? p.p90 : null);
    p99.push(has ? p.p99 : null);
    totals.calls += p.calls;
    totals.errors += p.errors;
    totals.rejected += p.limited + p.broken;
    totals.p99 = Math.max(totals.p99, p.p99);
  }
  totals.seconds = (series.to - series.from) / 1000;
  return {
    qps: [xs, qps],
    errors: [xs, errors, rejected, degraded],
    latency: [xs, p50, p90, p99],
    xRange: [series.from / 1000, series.to / 1000 - series.step],
    totals,
  };
}

/** The live window starts full: the last five minutes of stored seconds, then the socket's. */
function useBackfill(app: string, live: boolean): void {
  useEffect(() => {
    if (!live) return;
    const controller = new AbortController();
    const to = Math.floor(Date.now() / 1000) * 1000;
    for (const direction of ['inbound', 'outbound'] as const) {
      api<Series>(
        withQuery('/api/stats/series', { application: app, from: to - WINDOW_SECONDS * 1000, to, step: '1s', direction }),
        {
          signal: controller.signal,
        },
      ).then(
        (series) => backfill(app, direction, series.points),
        () => undefined,
      );
    }
    return () => controller.abort();
  }, [app, live]);
}

function AppTraffic({ app, range, direction }: { app: string; range: Range; direction: Direction }) {
  const version = useStore(liveVersion);
  useBackfill(app, range === 'live');
  const span = useMemo(() => {
    if (range === 'live') return undefined;
    const r = RANGES[range];
    const to = Math.ceil(Date.now() / r.stepMs) * r.stepMs;
    return { from: to - r.ms, to, step: r.step };
  }, [range, app, direction]);
  const series = useApi<Series>(
    span ? withQuery('/api/stats/series', { application: app, from: span.from, to: span.to, step: span.step, direction }) : null,
    { refreshMs: 60_000 },
  );
  const data = useMemo(
    () => (range === 'live' ? liveChartData(app, direction) : series.data ? seriesChartData(series.data) : undefined),
    [range, app, direction, version, series.data],
  );
  const noLive = range === 'live' && livePoints(app).length === 0;

  return (
    <>
      <ErrorNote error={series.error} stale={series.data !== undefined} />
      {data && (
        <div class="stats-row compact">
          <div class="stat">
            <div class="stat-value">{fmtNum(data.totals.seconds ? data.totals.calls / data.totals.seconds : 0)}</div>
            <div class="stat-label">avg calls/s</div>
          </div>
          <div class={`stat ${data.totals.errors ? 'stat-bad' : ''}`}>
            <div class="stat-value">{fmtInt(data.totals.errors)}</div>
            <div class="stat-label">errors ({fmtPct(data.totals.calls ? data.totals.errors / data.totals.calls : 0)})</div>
          </div>
          <div class={`stat ${data.totals.rejected ? 'stat-warn' : ''}`}>
            <div class="stat-value">{fmtInt(data.totals.rejected)}</div>
            <div class="stat-label">rejected (limited + broken)</div>
          </div>
          <div class="stat">
            <div class="stat-value">{fmtMs(data.totals.p99)}</div>
            <div class="stat-label">worst p99</div>
          </div>
          <div class="stat">
            <div class="stat-value">
              {range === 'live' ? (
                <Badge tone="ok">live</Badge>
              ) : (
                <Badge tone="muted">{series.data?.resolution ?? '…'} steps</Badge>
              )}
            </div>
            <div class="stat-label">{range === 'live' ? 'per second, rolling 5 min' : `last ${range}`}</div>
          </div>
        </div>
      )}
      {noLive && (
        <div class="note note-info" data-testid="traffic-no-live">
          No live second from <b>{app}</b> since this page was opened. The charts fill as seconds arrive; choose 1 h for the
          stored history.
        </div>
      )}
      {range !== 'live' && !series.data && series.loading && <Loading />}
      {data && (
        <div class="charts" data-testid="traffic-charts">
          <TimeChart
            title="Throughput (calls per second)"
            series={QPS_SERIES}
            data={data.qps}
            xRange={data.xRange}
            format={fmtNum}
            testid="chart-qps"
          />
          <TimeChart
            title="Errors and rejections (per second)"
            series={ERROR_SERIES}
            data={data.errors}
            xRange={data.xRange}
            format={fmtNum}
            testid="chart-errors"
          />
          <TimeChart
            title="Latency"
            series={LATENCY_SERIES}
            data={data.latency}
            xRange={data.xRange}
            format={fmtMs}
            testid="chart-latency"
          />
        </div>
      )}
      <TopTable app={app} range={range} direction={direction} />
    </>
  );
}

function TopTable({ app, range, direction }: { app: string; range: Range; direction: Direction }) {
  const { query } = useRoute();
  const by = (query.get('by') as 'resource' | 'peer' | null) ?? 'resource';
  const metric = (query.get('metric') as 'qps' | 'errors' | 'p99' | null) ?? 'qps';
  const span = range === 'live' ? { ms: 5 * 60_000, stepMs: 1000 } : RANGES[range];
  // the range moves on every 10 s (live) or every step; rounded so a refresh reads whole windows
  const bucket = range === 'live' ? 10_000 : span.stepMs;
  const now = useNow(range === 'live' ? 10_000 : 60_000);
  const to = Math.ceil(now / bucket) * bucket;
  const url = withQuery('/api/stats/top', { application: app, from: to - span.ms, to, by, metric, direction, limit: 50 });
  const top = useApi<TopResult>(url);
  return (
    <Section
      title={`Top ${by === 'resource' ? 'resources' : direction === 'inbound' ? 'callers' : 'callees'} · ${range === 'live' ? 'last 5 min' : `last ${range}`}`}
      testid="traffic-top"
      actions={
        <>
          <Segmented
            value={by}
            options={[
              { value: 'resource', label: 'Resources' },
              { value: 'peer', label: direction === 'inbound' ? 'Callers' : 'Callees' },
            ]}
            onChange={(v) => setQuery({ by: v === 'resource' ? undefined : v })}
          />
          <Segmented
            value={metric}
            options={[
              { value: 'qps', label: 'QPS' },
              { value: 'errors', label: 'Errors' },
              { value: 'p99', label: 'p99' },
            ]}
            onChange={(v) => setQuery({ metric: v === 'qps' ? undefined : v })}
          />
          <button type="button" class="btn btn-small" onClick={() => top.reload()}>
            Refresh
          </button>
        </>
      }
    >
      <ErrorNote error={top.error} stale={top.data !== undefined} />
      {top.data === undefined ? (
        top.loading ? (
          <Loading />
        ) : null
      ) : (top.data?.items ?? []).length === 0 ? (
        <p class="muted">
          No {direction} calls of {app} in this range.
        </p>
      ) : (
        <table class="table" data-testid="traffic-top-table">
          <thead>
            <tr>
              <th>{by === 'resource' ? 'Resource' : direction === 'inbound' ? 'Caller' : 'Callee'}</th>
              {by === 'resource' && <th>Protocol</th>}
              <th class="num">QPS</th>
              <th class="num">Calls</th>
              <th class="num">Errors</th>
              <th class="num">Error rate</th>
              <th class="num">Limited</th>
              <th class="num">Broken</th>
              <th class="num">p50</th>
              <th class="num">p90</th>
              <th class="num">p99</th>
            </tr>
          </thead>
          <tbody>
            {top.data.items.map((i) => (
              <tr key={`${i.direction}|${i.protocol ?? ''}|${i.resource ?? i.peer ?? ''}`} data-testid="traffic-top-row">
                <td class="mono clip" title={i.resource ?? i.peer}>
                  {by === 'resource' ? (
                    i.resource
                  ) : i.peer ? (
                    <a href={href('/traffic', { application: i.peer })}>{i.peer}</a>
                  ) : (
                    <span class="muted">(unknown)</span>
                  )}
                </td>
                {by === 'resource' && <td>{i.protocol}</td>}
                <td class="num">{fmtNum(i.qps)}</td>
                <td class="num">{fmtInt(i.calls)}</td>
                <td class="num">{i.errors ? <span class="text-bad">{fmtInt(i.errors)}</span> : '0'}</td>
                <td class="num">{fmtPct(i.errorRate)}</td>
                <td class="num">{fmtInt(i.limited)}</td>
                <td class="num">{fmtInt(i.broken)}</td>
                <td class="num">{fmtMs(i.p50)}</td>
                <td class="num">{fmtMs(i.p90)}</td>
                <td class="num">{fmtMs(i.p99)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}
