import { useMemo } from 'preact/hooks';
import { withQuery } from '../api';
import { Badge, Empty, ErrorNote, Section, Stat, Time } from '../components/ui';
import { fmtInt, fmtMs, fmtNum, fmtPct } from '../format';
import { useApi } from '../hooks';
import { useLiveRefresh } from '../live';
import { href } from '../router';
import type { AgentApplication, CatalogApplication, CatalogInstance, GraphResult, Page, SourceState } from '../types';

const WINDOW_MS = 15 * 60_000;

export function OverviewScreen() {
  const all = useApi<Page<CatalogApplication>>('/api/registry/applications?pageSize=1');
  const zk = useApi<Page<CatalogApplication>>('/api/registry/applications?pageSize=1&sourceKind=zookeeper');
  const eureka = useApi<Page<CatalogApplication>>('/api/registry/applications?pageSize=1&sourceKind=eureka');
  const instances = useApi<Page<CatalogInstance>>('/api/registry/instances?pageSize=1');
  const down = useApi<Page<CatalogInstance>>('/api/registry/instances?pageSize=1&status=DOWN');
  const stale = useApi<Page<CatalogInstance>>('/api/registry/instances?pageSize=1&stale=true');
  const sources = useApi<SourceState[]>('/api/registry/sources', { refreshMs: 15_000 });
  const agents = useApi<{ total: number; items: AgentApplication[] }>('/api/agents', { refreshMs: 30_000 });
  // a fixed window, rounded to the minute, so the refresh hits whole minute windows
  const graphUrl = useMemo(() => {
    const to = Math.ceil(Date.now() / 60_000) * 60_000;
    return withQuery('/api/stats/graph', { from: to - WINDOW_MS, to });
  }, []);
  const graph = useApi<GraphResult>(graphUrl, { refreshMs: 30_000 });

  useLiveRefresh(
    ['catalog'],
    () => {
      all.reload();
      zk.reload();
      eureka.reload();
      instances.reload();
      down.reload();
      stale.reload();
    },
    undefined,
    3000,
  );
  useLiveRefresh(['agents', 'rules'], agents.reload, undefined, 1500);

  const total = all.data?.total;
  const zkTotal = zk.data?.total;
  const euTotal = eureka.data?.total;
  const both = total !== undefined && zkTotal !== undefined && euTotal !== undefined ? zkTotal + euTotal - total : undefined;
  const zkOnly = zkTotal !== undefined && both !== undefined ? zkTotal - both : undefined;
  const euOnly = euTotal !== undefined && both !== undefined ? euTotal - both : undefined;

  const agentApps = agents.data?.items ?? [];
  const online = agentApps.reduce((n, a) => n + a.connected, 0);
  const lagging = agentApps.reduce((n, a) => n + Math.max(0, a.connected - a.acknowledged), 0);
  const nacked = agentApps.reduce((n, a) => n + a.nacked, 0);
  const byLag = [...agentApps].sort(
    (a, b) => b.connected - b.acknowledged - (a.connected - a.acknowledged) || a.application.localeCompare(b.application),
  );

  const reporting = (graph.data?.nodes ?? []).filter((n) => n.reporting && n.inbound.calls > 0);
  const topErrors = [...reporting]
    .filter((n) => n.inbound.errors > 0)
    .sort((a, b) => b.inbound.errors - a.inbound.errors)
    .slice(0, 8);
  const topLatency = [...reporting].sort((a, b) => b.inbound.p99 - a.inbound.p99).slice(0, 8);

  const emptyEstate = total === 0 && agents.data !== undefined && agentApps.length === 0;
  const error = all.error ?? agents.error ?? sources.error;

  return (
    <div class="screen" data-testid="screen-overview">
      <div class="screen-head">
        <h1>Overview</h1>
        <span class="muted small">
          {all.at ? (
            <>
              updated <Time value={all.at} />
            </>
          ) : null}
        </span>
      </div>
      <ErrorNote error={error} stale={all.data !== undefined} />
      {emptyEstate && (
        <Empty title="Nothing to govern yet">
          No application is registered in ZooKeeper or Eureka and no agent is connected. Point the server at your registries (
          <code>ZOOKEEPER_CONNECT</code>, <code>EUREKA_URLS</code>) or start an application with the Steward agent (
          <code>node --require steward/agent/register app.js</code>).
        </Empty>
      )}
      <div class="stats-row">
        <Stat
          label="Applications"
          value={fmtInt(total)}
          testid="overview-applications"
          sub={
            both !== undefined ? (
              <>
                {fmtInt(zkOnly)} ZooKeeper · {fmtInt(euOnly)} Eureka · {fmtInt(both)} both
              </>
            ) : undefined
          }
        />
        <Stat
          label="Instances"
          value={fmtInt(instances.data?.total)}
          tone={(down.data?.total ?? 0) > 0 ? 'warn' : 'plain'}
          sub={
            <>
              {fmtInt(down.data?.total)} down · {fmtInt(stale.data?.total)} stale
            </>
          }
        />
        <Stat
          label="Agents online"
          value={fmtInt(online)}
          testid="overview-agents"
          sub={<>in {fmtInt(agentApps.length)} applications</>}
        />
        <Stat
          label="Instances lagging"
          value={fmtInt(lagging)}
          tone={nacked > 0 ? 'bad' : lagging > 0 ? 'warn' : 'ok'}
          testid="overview-lagging"
          sub={<>{fmtInt(nacked)} refused (NACK)</>}
        />
      </div>

      <div class="grid-2">
        <Section title="Applications by registry">
          {total === undefined ? null : total === 0 ? (
            <p class="muted">No application in any registry.</p>
          ) : (
            <>
              <div class="stackbar" aria-label="applications by registry">
                <span class="seg seg-zk" style={{ flexGrow: zkOnly ?? 0 }} title={`ZooKeeper only: ${zkOnly}`} />
                <span class="seg seg-both" style={{ flexGrow: both ?? 0 }} title={`both: ${both}`} />
                <span class="seg seg-eureka" style={{ flexGrow: euOnly ?? 0 }} title={`Eureka only: ${euOnly}`} />
              </div>
              <div class="legend">
                <a href={href('/catalog', { sourceKind: 'zookeeper' })}>
                  <span class="swatch seg-zk" /> ZooKeeper only <b>{fmtInt(zkOnly)}</b>
                </a>
                <span>
                  <span class="swatch seg-both" /> both registries <b>{fmtInt(both)}</b>
                </span>
                <a href={href('/catalog', { sourceKind: 'eureka' })}>
                  <span class="swatch seg-eureka" /> Eureka only <b>{fmtInt(euOnly)}</b>
                </a>
              </div>
            </>
          )}
          <h3 class="subhead">Registries</h3>
          {(sources.data ?? []).length === 0 ? (
            <p class="muted">No registry source configured.</p>
          ) : (
            <ul class="plain-list">
              {(sources.data ?? []).map((s) => (
                <li key={s.source}>
                  <Badge tone={s.reachable ? 'ok' : 'bad'}>{s.reachable ? 'reachable' : 'unreachable'}</Badge>{' '}
                  <code>{s.source}</code>{' '}
                  <span class="muted small">
                    {fmtInt(s.registrations)} registrations · since <Time value={s.since} />
                    {s.error ? ` · ${s.error}` : ''}
                  </span>
                </li>
              ))}
            </ul>
          )}
        </Section>

        <Section
          title="Rule revisions"
          actions={
            <a class="small" href="/agents">
              All agents ›
            </a>
          }
        >
          {agentApps.length === 0 ? (
            <p class="muted">No agent is connected. Rules are pushed to agents as they connect.</p>
          ) : (
            <table class="table" data-testid="overview-revisions">
              <thead>
                <tr>
                  <th>Application</th>
                  <th class="num">Revision</th>
                  <th class="num">Online</th>
                  <th class="num">Acknowledged</th>
                  <th class="num">Lagging</th>
                </tr>
              </thead>
              <tbody>
                {byLag.slice(0, 12).map((a) => {
                  const lag = Math.max(0, a.connected - a.acknowledged);
                  return (
                    <tr key={a.application}>
                      <td>
                        <a href={`/agents/${encodeURIComponent(a.application)}`}>{a.application}</a>
                      </td>
                      <td class="num">{a.revision}</td>
                      <td class="num">{a.connected}</td>
                      <td class="num">{a.acknowledged}</td>
                      <td class="num">
                        {lag === 0 ? (
                          <span class="muted">0</span>
                        ) : (
                          <Badge tone={a.nacked > 0 ? 'bad' : 'warn'}>
                            {lag}
                            {a.nacked > 0 ? ` (${a.nacked} NACK)` : ''}
                          </Badge>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
          {byLag.length > 12 && <p class="muted small">and {byLag.length - 12} more applications</p>}
        </Section>
      </div>

      <div class="grid-2">
        <Section title="Top applications by errors · last 15 min">
          {graph.data && topErrors.length === 0 ? (
            <p class="muted">
              {reporting.length === 0 ? 'No statistics reported in the last 15 minutes.' : 'No errors in this window.'}
            </p>
          ) : (
            <TopTable rows={topErrors.map((n) => ({ app: n.application, ...n.inbound }))} />
          )}
        </Section>
        <Section title="Top applications by p99 latency · last 15 min">
          {graph.data && topLatency.length === 0 ? (
            <p class="muted">No statistics reported in the last 15 minutes.</p>
          ) : (
            <TopTable rows={topLatency.map((n) => ({ app: n.application, ...n.inbound }))} />
          )}
        </Section>
      </div>
    </div>
  );
}

function TopTable({ rows }: { rows: { app: string; qps: number; errors: number; errorRate: number; p99: number }[] }) {
  if (rows.length === 0) return null;
  return (
    <table class="table">
      <thead>
        <tr>
          <th>Application</th>
          <th class="num">QPS</th>
          <th class="num">Errors</th>
          <th class="num">Error rate</th>
          <th class="num">p99</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr key={r.app}>
            <td>
              <a href={href('/traffic', { application: r.app })}>{r.app}</a>
            </td>
            <td class="num">{fmtNum(r.qps)}</td>
            <td class="num">{fmtInt(r.errors)}</td>
            <td class="num">{fmtPct(r.errorRate)}</td>
            <td class="num">{fmtMs(r.p99)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
