import { useMemo, useState } from 'preact/hooks';
import { enc } from '../api';
import {
  Badge,
  Empty,
  ErrorNote,
  Filter,
  Loading,
  ClientPager,
  Section,
  Segmented,
  Stat,
  SyncBadge,
  Time,
  useClientPage,
} from '../components/ui';
import { fmtInt } from '../format';
import { useApi, useNow } from '../hooks';
import { useLive, useLiveRefresh } from '../live';
import { href, useRoute } from '../router';
import type { AgentApplication, AgentView, ApplicationAgents, ReplicaState, SyncState } from '../types';

export function AgentsScreen() {
  const { path } = useRoute();
  const app = path.split('/')[2];
  return app ? <ApplicationAgentsPage name={decodeURIComponent(app)} /> : <AgentApplications />;
}

function AgentApplications() {
  const agents = useApi<{ total: number; items: AgentApplication[]; replicas: ReplicaState[] }>('/api/agents', {
    refreshMs: 30_000,
  });
  useLiveRefresh(['agents', 'rules'], agents.reload, undefined, 1000);
  const [filter, setFilter] = useState('');
  const [only, setOnly] = useState<'all' | 'lagging'>('all');
  const f = filter.trim().toLowerCase();
  const rows = useMemo(
    () =>
      (agents.data?.items ?? [])
        .filter((a) => (!f || a.application.includes(f)) && (only === 'all' || a.connected > a.acknowledged))
        .sort((a, b) => a.application.localeCompare(b.application)),
    [agents.data, f, only],
  );
  const paging = useClientPage(rows, 200, `${f}|${only}`);
  const items = agents.data?.items ?? [];
  const online = items.reduce((n, a) => n + a.connected, 0);
  const lagging = items.reduce((n, a) => n + Math.max(0, a.connected - a.acknowledged), 0);
  const nacked = items.reduce((n, a) => n + a.nacked, 0);
  const replicas = agents.data?.replicas ?? [];

  return (
    <div class="screen" data-testid="screen-agents">
      <div class="screen-head">
        <h1>Agents</h1>
      </div>
      <ErrorNote error={agents.error} stale={agents.data !== undefined} />
      {agents.data === undefined ? (
        agents.loading ? (
          <Loading />
        ) : null
      ) : items.length === 0 ? (
        <Empty title="No agent connected">
          Applications run the Steward agent to receive rules: <code>node --require steward/agent/register app.js</code> with{' '}
          <code>STEWARD_URL</code> and an agent token. Agents that disconnect stay listed for 15 minutes.
        </Empty>
      ) : (
        <>
          <div class="stats-row">
            <Stat label="Applications with agents" value={fmtInt(items.length)} />
            <Stat label="Agents online" value={fmtInt(online)} />
            <Stat label="Lagging" value={fmtInt(lagging)} tone={lagging > 0 ? 'warn' : 'ok'} sub="not on the current revision" />
            <Stat label="NACKed" value={fmtInt(nacked)} tone={nacked > 0 ? 'bad' : 'ok'} sub="refused the current revision" />
            <Stat
              label="Server replicas"
              value={fmtInt(replicas.length)}
              sub={`agents on each: ${replicas.map((r) => fmtInt(r.connected)).join(' · ')}`}
              testid="agents-replicas"
            />
          </div>
          <div class="toolbar">
            <Filter value={filter} onInput={setFilter} placeholder="Filter applications…" testid="agents-filter" />
            <Segmented
              value={only}
              options={[
                { value: 'all', label: 'All' },
                { value: 'lagging', label: 'Lagging only' },
              ]}
              onChange={setOnly}
            />
            <span class="muted small">{rows.length} shown</span>
          </div>
          <table class="table table-hover" data-testid="agents-table">
            <thead>
              <tr>
                <th>Application</th>
                <th class="num">Current revision</th>
                <th class="num">Online</th>
                <th class="num">Acknowledged</th>
                <th class="num">Pending</th>
                <th class="num">NACKed</th>
                <th>Sync</th>
              </tr>
            </thead>
            <tbody>
              {paging.pageItems.map((a) => (
                <tr key={a.application} data-testid="agents-row">
                  <td>
                    <a class="strong" href={`/agents/${enc(a.application)}`}>
                      {a.application}
                    </a>
                  </td>
                  <td class="num">{a.revision}</td>
                  <td class="num">{a.connected}</td>
                  <td class="num">{a.acknowledged}</td>
                  <td class="num">{a.pending || <span class="muted">0</span>}</td>
                  <td class="num">{a.nacked ? <Badge tone="bad">{a.nacked}</Badge> : <span class="muted">0</span>}</td>
                  <td>
                    <SyncBar {...a} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <ClientPager paging={paging} />
        </>
      )}
    </div>
  );
}

function SyncBar(a: { connected: number; acknowledged: number; pending: number; nacked: number }) {
  if (a.connected === 0) return <span class="muted small">none online</span>;
  return (
    <span class="syncbar" title={`${a.acknowledged} in sync, ${a.pending} pending, ${a.nacked} NACKed`}>
      <span class="seg seg-ok" style={{ flexGrow: a.acknowledged }} />
      <span class="seg seg-info" style={{ flexGrow: a.pending }} />
      <span class="seg seg-bad" style={{ flexGrow: a.nacked }} />
    </span>
  );
}

/** Applies one live agent event to the list held, so the page moves before the re-fetch lands. */
function patch(
  data: ApplicationAgents,
  e: { instanceId: string; event: string; revision?: number; reason?: string; at: number },
) {
  const at = new Date(e.at || Date.now()).toISOString();
  const agents = data.agents.map((a): AgentView => {
    if (a.instanceId !== e.instanceId) return a;
    switch (e.event) {
      case 'connected':
        return { ...a, connected: true, connectedSince: at, sync: a.appliedRevision >= data.revision ? 'in-sync' : 'pending' };
      case 'disconnected':
        return { ...a, connected: false, disconnectedAt: at, sync: 'disconnected' };
      case 'ack': {
        const revision = e.revision ?? a.appliedRevision;
        return { ...a, appliedRevision: revision, appliedAt: at, sync: revision >= data.revision ? 'in-sync' : 'pending' };
      }
      case 'nack':
        return {
          ...a,
          sync: 'nacked',
          lastNack: { revision: e.revision ?? data.revision, reason: e.reason ?? '', keptRevision: a.appliedRevision, at },
        };
      default:
        return a;
    }
  });
  return { ...data, agents };
}

const SYNC_FILTERS: { value: SyncState | 'all'; label: string }[] = [
  { value: 'all', label: 'All' },
  { value: 'in-sync', label: 'In sync' },
  { value: 'pending', label: 'Pending' },
  { value: 'nacked', label: 'NACKed' },
  { value: 'disconnected', label: 'Disconnected' },
];

function ApplicationAgentsPage({ name }: { name: string }) {
  const state = useApi<ApplicationAgents>(`/api/applications/${enc(name)}/agents`, { refreshMs: 30_000 });
  useLive('agents', (e) => {
    if (e.application === name) state.setData((d) => (d ? patch(d, e) : d));
  });
  useLiveRefresh(['agents', 'rules'], state.reload, (_event, p) => p.application === name, 1500);
  useNow(5000);
  const [filter, setFilter] = useState('');
  const [sync, setSync] = useState<SyncState | 'all'>('all');
  const [open, setOpen] = useState<string | undefined>(undefined);
  const d = state.data;
  const f = filter.trim().toLowerCase();
  const rows = useMemo(
    () =>
      (d?.agents ?? []).filter(
        (a) =>
          (sync === 'all' || a.sync === sync) &&
          (!f ||
            a.instanceId.toLowerCase().includes(f) ||
            a.host.includes(f) ||
            (a.lastNack?.reason ?? '').toLowerCase().includes(f)),
      ),
    [d, f, sync],
  );
  const paging = useClientPage(rows, 200, `${f}|${sync}`);
  const counts = useMemo(() => {
    const c: Record<SyncState, number> = { 'in-sync': 0, pending: 0, nacked: 0, disconnected: 0 };
    for (const a of d?.agents ?? []) c[a.sync]++;
    return c;
  }, [d]);

  return (
    <div class="screen" data-testid="screen-agents-application">
      <div class="crumbs">
        <a href="/agents">Agents</a> ›
      </div>
      <div class="screen-head">
        <h1>{name}</h1>
        {d && <Badge tone="accent">revision {d.revision}</Badge>}
        <div class="spacer" />
        <a class="btn btn-small" href={`/catalog/${enc(name)}`}>
          Catalog
        </a>
        <a class="btn btn-small" href={href('/rules', { application: name })}>
          Rules
        </a>
      </div>
      <ErrorNote error={state.error} stale={d !== undefined} />
      {!d && state.loading && <Loading />}
      {d && d.agents.length === 0 && (
        <Empty title="No agent for this application">
          No instance of <b>{name}</b> has connected with the Steward agent in the last 15 minutes.
        </Empty>
      )}
      {d && d.agents.length > 0 && (
        <>
          <div class="stats-row">
            <Stat label="Online" value={fmtInt(d.agents.filter((a) => a.connected).length)} />
            <Stat label="In sync" value={fmtInt(counts['in-sync'])} tone="ok" sub={`on revision ${d.revision}`} />
            <Stat label="Pending" value={fmtInt(counts.pending)} tone={counts.pending ? 'warn' : 'plain'} />
            <Stat label="NACKed" value={fmtInt(counts.nacked)} tone={counts.nacked ? 'bad' : 'plain'} />
            <Stat label="Disconnected" value={fmtInt(counts.disconnected)} />
          </div>
          <Section
            title="Instances"
            actions={
              <>
                <Filter
                  value={filter}
                  onInput={setFilter}
                  placeholder="Filter instance, host, NACK reason…"
                  testid="agent-filter"
                />
                <Segmented value={sync} options={SYNC_FILTERS} onChange={setSync} testid="agent-sync" />
              </>
            }
          >
            {rows.length === 0 ? (
              <p class="muted">No instance matches.</p>
            ) : (
              <table class="table table-hover" data-testid="agent-instances">
                <thead>
                  <tr>
                    <th>Instance</th>
                    <th>Connection</th>
                    <th class="num">Applied / current</th>
                    <th>Sync</th>
                    <th>Last NACK</th>
                    <th>Breakers</th>
                    <th>Agent</th>
                  </tr>
                </thead>
                <tbody>
                  {paging.pageItems.map((a) => {
                    const breakers = Object.entries(a.breakers);
                    const openBreakers = breakers.filter(([, b]) => b.state !== 'CLOSED');
                    return [
                      <tr
                        key={a.instanceId}
                        data-testid="agent-instance-row"
                        data-instance={a.instanceId}
                        data-sync={a.sync}
                        class={open === a.instanceId ? 'open' : ''}
                      >
                        <td>
                          <button
                            type="button"
                            class="link mono"
                            onClick={() => setOpen(open === a.instanceId ? undefined : a.instanceId)}
                          >
                            {open === a.instanceId ? '▾' : '▸'} {a.instanceId}
                          </button>
                          <div class="muted small mono">
                            {a.host}
                            {a.ports.length ? `:${a.ports.join(',')}` : ''}
                          </div>
                        </td>
                        <td>
                          {a.connected ? (
                            <>
                              <Badge tone="ok">online</Badge>{' '}
                              <span class="muted small">
                                since <Time value={a.connectedSince} />
                              </span>
                            </>
                          ) : (
                            <>
                              <Badge tone="muted">offline</Badge>{' '}
                              <span class="muted small">
                                <Time value={a.disconnectedAt} />
                              </span>
                            </>
                          )}
                        </td>
                        <td class="num">
                          <span class={a.appliedRevision === d.revision ? '' : 'text-warn strong'}>{a.appliedRevision}</span>
                          <span class="muted"> / {d.revision}</span>
                        </td>
                        <td>
                          <SyncBadge sync={a.sync} />
                        </td>
                        <td class="nack-cell">
                          {a.lastNack ? (
                            <span title={a.lastNack.reason}>
                              <span class="muted small">rev {a.lastNack.revision}: </span>
                              <span class="text-bad" data-testid="nack-reason">
                                {a.lastNack.reason}
                              </span>
                            </span>
                          ) : (
                            <span class="muted">–</span>
                          )}
                        </td>
                        <td>
                          {breakers.length === 0 ? (
                            <span class="muted">–</span>
                          ) : openBreakers.length > 0 ? (
                            <Badge tone="bad" title={openBreakers.map(([id, b]) => `${id}: ${b.state}`).join('\n')}>
                              {openBreakers.length} open
                            </Badge>
                          ) : (
                            <span class="muted small">{breakers.length} closed</span>
                          )}
                        </td>
                        <td class="small">
                          {a.agent.language} {a.agent.version}
                        </td>
                      </tr>,
                      open === a.instanceId && (
                        <tr key={`${a.instanceId}-detail`} class="detail-row">
                          <td colSpan={7}>
                            <div class="kv">
                              <span>Server replica</span>
                              <code>{a.replica}</code>
                              <span>Remote address</span>
                              <code>{a.remoteAddress}</code>
                              <span>Last heartbeat</span>
                              <Time value={a.lastHeartbeatAt} />
                              <span>Applied at</span>
                              <Time value={a.appliedAt} />
                              <span>Clock skew</span>
                              <span>{a.clockSkewMs === null ? '–' : `${a.clockSkewMs} ms`}</span>
                              <span>Capabilities</span>
                              <span>{a.capabilities.join(', ') || '–'}</span>
                              {a.lastNack && (
                                <>
                                  <span>Last NACK</span>
                                  <span>
                                    revision {a.lastNack.revision}, kept {a.lastNack.keptRevision}, <Time value={a.lastNack.at} />
                                    : <code class="wrap">{a.lastNack.reason}</code>
                                  </span>
                                </>
                              )}
                              {breakers.length > 0 && (
                                <>
                                  <span>Breakers</span>
                                  <span class="chips">
                                    {breakers.map(([id, b]) => (
                                      <Badge key={id} tone={b.state === 'OPEN' ? 'bad' : b.state === 'HALF_OPEN' ? 'warn' : 'ok'}>
                                        {id}: {b.state}
                                      </Badge>
                                    ))}
                                  </span>
                                </>
                              )}
                            </div>
                          </td>
                        </tr>
                      ),
                    ];
                  })}
                </tbody>
              </table>
            )}
            <ClientPager paging={paging} />
          </Section>
        </>
      )}
    </div>
  );
}
