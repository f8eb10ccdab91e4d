import { useMemo, useState } from 'preact/hooks';
import { api, ApiError, enc, withQuery } from '../api';
import { ConfirmDialog } from '../components/dialog';
import {
  Badge,
  Empty,
  ErrorNote,
  Filter,
  Loading,
  ClientPager,
  Pager,
  Section,
  Segmented,
  SourceBadges,
  Stat,
  StatusBadge,
  Time,
  useClientPage,
} from '../components/ui';
import { fmtInt } from '../format';
import { useApi, useDebounced } from '../hooks';
import { useLiveRefresh } from '../live';
import { href, setQuery, useRoute } from '../router';
import { canEdit, session } from '../session';
import { useStore } from '../store';
import type { ApplicationDetail, CatalogApplication, CatalogInstance, InstanceStatus, NativeControl, Page } from '../types';

export function CatalogScreen() {
  const { path } = useRoute();
  const app = path.split('/')[2];
  return app ? <ApplicationPage name={decodeURIComponent(app)} /> : <CatalogList />;
}

const PAGE_SIZE = 100;

function CatalogList() {
  const { query } = useRoute();
  const [q, setQ] = useState(query.get('q') ?? '');
  const debouncedQ = useDebounced(q.trim(), 300);
  const sourceKind = query.get('sourceKind') ?? '';
  const page = Math.max(1, Number(query.get('page') ?? 1) || 1);
  const url = withQuery('/api/registry/applications', { q: debouncedQ, sourceKind, page, pageSize: PAGE_SIZE });
  const apps = useApi<Page<CatalogApplication>>(url);
  useLiveRefresh(['catalog'], apps.reload, undefined, 2000);

  const items = apps.data?.items ?? [];
  return (
    <div class="screen" data-testid="screen-catalog">
      <div class="screen-head">
        <h1>Catalog</h1>
        <span class="muted">
          {apps.data ? `${fmtInt(apps.data.total)} application${apps.data.total === 1 ? '' : 's'}` : ''}
          {apps.loading && ' · loading…'}
        </span>
      </div>
      <div class="toolbar">
        <Filter
          value={q}
          placeholder="Search applications and interfaces…"
          testid="catalog-search"
          autoFocus
          onInput={(value) => {
            setQ(value);
            if (page !== 1) setQuery({ page: undefined });
          }}
        />
        <Segmented
          value={sourceKind}
          testid="catalog-source"
          options={[
            { value: '', label: 'All registries' },
            { value: 'zookeeper', label: 'ZooKeeper' },
            { value: 'eureka', label: 'Eureka' },
          ]}
          onChange={(value) => setQuery({ sourceKind: value, page: undefined })}
        />
      </div>
      <ErrorNote error={apps.error} stale={apps.data !== undefined} />
      {apps.data === undefined ? (
        apps.loading ? (
          <Loading />
        ) : null
      ) : items.length === 0 ? (
        debouncedQ || sourceKind ? (
          <Empty title="No application matches">Try another name, interface or registry.</Empty>
        ) : (
          <Empty title="The catalog is empty">
            No application is registered in ZooKeeper or Eureka yet. Applications appear here as soon as they register.
          </Empty>
        )
      ) : (
        <>
          <table class="table table-hover" data-testid="catalog-table">
            <thead>
              <tr>
                <th>Application</th>
                <th>Registries</th>
                <th class="num">Instances</th>
                <th class="num">Dubbo</th>
                <th class="num">HTTP</th>
                <th class="num">Services</th>
                <th>Status</th>
              </tr>
            </thead>
            <tbody>
              {items.map((a) => (
                <tr key={a.name} data-testid="app-row">
                  <td>
                    <a href={`/catalog/${enc(a.name)}`} class="strong">
                      {a.name}
                    </a>
                    {a.stale && (
                      <>
                        {' '}
                        <Badge tone="warn" title="every registry that reported it is unreachable">
                          stale
                        </Badge>
                      </>
                    )}
                  </td>
                  <td>
                    <SourceBadges kinds={a.sourceKinds} />
                  </td>
                  <td class="num">{fmtInt(a.instanceCount)}</td>
                  <td class="num">{fmtInt(a.dubboInstances)}</td>
                  <td class="num">{fmtInt(a.httpInstances)}</td>
                  <td class="num">{fmtInt(a.services)}</td>
                  <td>
                    <StatusCounts counts={a.statusCounts} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pager
            page={page}
            pageSize={PAGE_SIZE}
            total={apps.data?.total}
            shown={items.length}
            onPage={(p) => setQuery({ page: p === 1 ? undefined : p }, { push: true })}
          />
        </>
      )}
    </div>
  );
}

const STATUS_ORDER: InstanceStatus[] = ['UP', 'STARTING', 'UNKNOWN', 'DISABLED', 'OUT_OF_SERVICE', 'DOWN'];

function StatusCounts({ counts }: { counts: Partial<Record<InstanceStatus, number>> }) {
  return (
    <span class="badges">
      {STATUS_ORDER.filter((s) => (counts[s] ?? 0) > 0).map((s) => (
        <span key={s} class="status-count">
          <StatusBadge status={s} /> {counts[s]}
        </span>
      ))}
    </span>
  );
}

type Tab = 'instances' | 'provides' | 'consumes' | 'controls';

function ApplicationPage({ name }: { name: string }) {
  const { query } = useRoute();
  const tab = (query.get('tab') as Tab | null) ?? 'instances';
  const detail = useApi<ApplicationDetail>(`/api/registry/applications/${enc(name)}`);
  const controls = useApi<Page<NativeControl>>(withQuery('/api/registry/controls', { application: name, pageSize: 500 }));
  useLiveRefresh(
    ['catalog'],
    detail.reload,
    (_e, p) => p.reset === true || !Array.isArray(p.changes) || p.changes.some((c) => c.instance?.application === name),
    1000,
  );

  const d = detail.data;
  const activeControls = useMemo(() => (controls.data?.items ?? []).filter((c) => c.state === 'active'), [controls.data]);

  const reloadAll = () => {
    detail.reload();
    controls.reload();
  };

  return (
    <div class="screen" data-testid="screen-application">
      <div class="crumbs">
        <a href="/catalog">Catalog</a> ›
      </div>
      <div class="screen-head">
        <h1 data-testid="application-name">{name}</h1>
        {d && <SourceBadges kinds={d.sourceKinds} />}
        {d?.stale && <Badge tone="warn">stale</Badge>}
        <div class="spacer" />
        <a class="btn btn-small" href={`/agents/${enc(name)}`}>
          Agents
        </a>
        <a class="btn btn-small" href={href('/rules', { application: name })}>
          Rules
        </a>
        <a class="btn btn-small" href={href('/traffic', { application: name })}>
          Traffic
        </a>
      </div>
      <ErrorNote error={detail.error} stale={d !== undefined} />
      {!d && detail.loading && <Loading />}
      {!d && detail.error instanceof ApiError && detail.error.status === 404 && (
        <Empty title={`No application named "${name}"`}>It is not registered in any registry right now.</Empty>
      )}
      {d && (
        <>
          <div class="stats-row">
            <Stat label="Instances" value={fmtInt(d.instanceCount)} sub={<StatusCounts counts={d.statusCounts} />} />
            <Stat label="Dubbo instances" value={fmtInt(d.dubboInstances)} />
            <Stat label="HTTP instances" value={fmtInt(d.httpInstances)} />
            <Stat label="Services provided" value={fmtInt(d.provides.length)} sub={`${d.consumes.length} consumed`} />
          </div>
          <Segmented
            value={tab}
            testid="app-tab"
            options={[
              { value: 'instances', label: `Instances (${d.instances.length})` },
              { value: 'provides', label: `Provides (${d.provides.length})` },
              { value: 'consumes', label: `Consumes (${d.consumes.length})` },
              { value: 'controls', label: `Controls (${controls.data?.total ?? 0})` },
            ]}
            onChange={(value) => setQuery({ tab: value === 'instances' ? undefined : value })}
          />
          {tab === 'instances' && <Instances instances={d.instances} controls={activeControls} onChanged={reloadAll} />}
          {tab === 'provides' && <Provides detail={d} />}
          {tab === 'consumes' && <Consumes detail={d} />}
          {tab === 'controls' && <Controls controls={controls.data?.items ?? []} error={controls.error} onChanged={reloadAll} />}
        </>
      )}
    </div>
  );
}

type Pending =
  | { kind: 'isolate'; instance: CatalogInstance }
  | { kind: 'weight'; instance: CatalogInstance }
  | { kind: 'revert'; control: NativeControl };

function Instances(props: { instances: CatalogInstance[]; controls: NativeControl[]; onChanged: () => void }) {
  const { me } = useStore(session);
  const editable = canEdit(me);
  const [filter, setFilter] = useState('');
  const [status, setStatus] = useState('');
  const [open, setOpen] = useState<string | undefined>(undefined);
  const [pending, setPending] = useState<Pending | undefined>(undefined);
  const f = filter.trim().toLowerCase();
  const rows = useMemo(
    () =>
      props.instances.filter(
        (i) =>
          (!status || i.status === status) &&
          (!f || `${i.host}:${i.port}`.includes(f) || i.kind.includes(f) || i.sources.some((s) => s.toLowerCase().includes(f))),
      ),
    [props.instances, f, status],
  );
  const paging = useClientPage(rows, 200, `${f}|${status}`);
  const controlOf = (instanceId: string, action: 'isolate' | 'weight') =>
    props.controls.find((c) => c.instanceId === instanceId && c.action === action);

  if (props.instances.length === 0) return <Empty title="No instances">This application has no registered instance.</Empty>;
  return (
    <Section
      title="Instances"
      actions={
        <>
          <Filter value={filter} onInput={setFilter} placeholder="Filter by host, port, kind, source…" testid="instance-filter" />
          <select class="input" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            <option value="">any status</option>
            {STATUS_ORDER.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
          <span class="muted small">
            {rows.length === props.instances.length ? `${rows.length}` : `${rows.length} of ${props.instances.length}`}
          </span>
        </>
      }
    >
      {rows.length === 0 ? (
        <p class="muted">No instance matches the filter.</p>
      ) : (
        <table class="table table-hover" data-testid="instances-table">
          <thead>
            <tr>
              <th>Address</th>
              <th>Kind</th>
              <th>Status</th>
              <th class="num">Weight</th>
              <th>Registries</th>
              <th class="num">Services</th>
              {editable && <th class="actions-col">Native controls</th>}
            </tr>
          </thead>
          <tbody>
            {paging.pageItems.map((i) => {
              const isolation = controlOf(i.id, 'isolate');
              const weighting = controlOf(i.id, 'weight');
              return [
                <tr key={i.id} data-testid="instance-row" class={open === i.id ? 'open' : ''}>
                  <td>
                    <button type="button" class="link mono" onClick={() => setOpen(open === i.id ? undefined : i.id)}>
                      {open === i.id ? '▾' : '▸'} {i.host}:{i.port}
                    </button>
                    {i.stale && (
                      <>
                        {' '}
                        <Badge tone="warn">stale</Badge>
                      </>
                    )}
                  </td>
                  <td>
                    <Badge tone={i.kind === 'dubbo' ? 'zk' : 'eureka'}>{i.kind}</Badge>
                  </td>
                  <td>
                    <StatusBadge status={i.status} />
                    {isolation && (
                      <>
                        {' '}
                        <Badge tone="warn" title={`isolated by ${isolation.actor}: ${isolation.reason}`}>
                          isolated
                        </Badge>
                      </>
                    )}
                  </td>
                  <td class="num">
                    {i.weight}
                    {weighting && (
                      <span class="muted small" title={`set by ${weighting.actor}`}>
                        {' '}
                        (set)
                      </span>
                    )}
                  </td>
                  <td>
                    <SourceBadges kinds={i.sourceKinds} />
                  </td>
                  <td class="num">{i.services.length}</td>
                  {editable && (
                    <td class="actions-col">
                      {isolation ? (
                        <button
                          type="button"
                          class="btn btn-small"
                          data-testid="control-restore"
                          onClick={() => setPending({ kind: 'revert', control: isolation })}
                        >
                          Restore
                        </button>
                      ) : (
                        <button
                          type="button"
                          class="btn btn-small btn-danger-outline"
                          data-testid="control-isolate"
                          onClick={() => setPending({ kind: 'isolate', instance: i })}
                        >
                          Isolate
                        </button>
                      )}
                      {i.kind === 'dubbo' &&
                        (weighting ? (
                          <button
                            type="button"
                            class="btn btn-small"
                            data-testid="control-weight-revert"
                            onClick={() => setPending({ kind: 'revert', control: weighting })}
                          >
                            Reset weight
                          </button>
                        ) : (
                          <button
                            type="button"
                            class="btn btn-small"
                            data-testid="control-weight"
                            onClick={() => setPending({ kind: 'weight', instance: i })}
                          >
                            Weight…
                          </button>
                        ))}
                    </td>
                  )}
                </tr>,
                open === i.id && (
                  <tr key={`${i.id}-detail`} class="detail-row">
                    <td colSpan={editable ? 7 : 6}>
                      <InstanceDetail instance={i} />
                    </td>
                  </tr>
                ),
              ];
            })}
          </tbody>
        </table>
      )}
      <ClientPager paging={paging} />
      {pending && <ControlDialog pending={pending} onClose={() => setPending(undefined)} onDone={props.onChanged} />}
    </Section>
  );
}

function InstanceDetail({ instance }: { instance: CatalogInstance }) {
  const meta = Object.entries(instance.metadata);
  return (
    <div class="detail">
      <div class="kv">
        <span>Id</span>
        <code>{instance.id}</code>
        <span>Sources</span>
        <span>{instance.sources.join(', ')}</span>
        <span>Registrations</span>
        <span>{instance.registrations}</span>
      </div>
      {instance.services.length > 0 && (
        <table class="table table-compact">
          <thead>
            <tr>
              <th>Side</th>
              <th>Interface</th>
              <th>Group</th>
              <th>Version</th>
              <th>Protocol</th>
              <th>Methods</th>
            </tr>
          </thead>
          <tbody>
            {instance.services.map((s) => (
              <tr key={`${s.side}|${s.key}|${s.protocol}`}>
                <td>{s.side}</td>
                <td class="mono">{s.interface}</td>
                <td>{s.group || <span class="muted">–</span>}</td>
                <td>{s.version || <span class="muted">–</span>}</td>
                <td>{s.protocol}</td>
                <td>
                  <Methods methods={s.methods} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {meta.length > 0 && (
        <details>
          <summary class="muted small">Metadata ({meta.length})</summary>
          <div class="kv">
            {meta.slice(0, 200).map(([k, v]) => [
              <span key={`k${k}`}>{k}</span>,
              <code key={`v${k}`} class="wrap">
                {v}
              </code>,
            ])}
          </div>
        </details>
      )}
    </div>
  );
}

function Methods({ methods }: { methods: string[] }) {
  const [all, setAll] = useState(false);
  if (methods.length === 0) return <span class="muted">–</span>;
  const shown = all ? methods : methods.slice(0, 6);
  return (
    <span class="chips">
      {shown.map((m) => (
        <span class="chip mono" key={m}>
          {m}
        </span>
      ))}
      {methods.length > shown.length && (
        <button type="button" class="link small" onClick={() => setAll(true)}>
          +{methods.length - shown.length} more
        </button>
      )}
    </span>
  );
}

function ControlDialog(props: { pending: Pending; onClose: () => void; onDone: () => void }) {
  const { pending } = props;
  const [weight, setWeight] = useState(pending.kind === 'weight' ? String(pending.instance.weight) : '100');
  if (pending.kind === 'revert') {
    const c = pending.control;
    return (
      <ConfirmDialog
        title={c.action === 'isolate' ? `Restore ${c.host}:${c.port}?` : `Reset the weight of ${c.host}:${c.port}?`}
        confirmLabel={c.action === 'isolate' ? 'Restore' : 'Reset weight'}
        onClose={props.onClose}
        onConfirm={async (reason) => {
          await api(`/api/registry/controls/${enc(c._id)}/revert`, { method: 'POST', body: { reason } });
          props.onDone();
        }}
      >
        <p>
          Undoes control <code>{c._id}</code> ({c.action}
          {c.weight !== undefined ? ` to ${c.weight}` : ''}, by {c.actor}).{' '}
          {c.registry === 'zookeeper' ? 'Dubbo consumers' : 'Eureka clients'} will route to the instance again.
        </p>
      </ConfirmDialog>
    );
  }
  const i = pending.instance;
  if (pending.kind === 'isolate') {
    return (
      <ConfirmDialog
        title={`Isolate ${i.host}:${i.port}?`}
        confirmLabel="Isolate"
        danger
        onClose={props.onClose}
        onConfirm={async (reason) => {
          await api('/api/registry/controls', { method: 'POST', body: { action: 'isolate', instanceId: i.id, reason } });
          props.onDone();
        }}
      >
        <p>
          {i.kind === 'dubbo'
            ? 'Writes a configurator (disabled: true) for every service of this provider in ZooKeeper: Dubbo consumers stop calling it within a fraction of a second.'
            : 'Sets the Eureka status override OUT_OF_SERVICE: Spring Cloud clients stop routing to it at their next fetch.'}
        </p>
        <p class="muted small">
          Instance <code>{i.id}</code> of <b>{i.application}</b>. Undo with Restore.
        </p>
      </ConfirmDialog>
    );
  }
  const n = Number(weight);
  const valid = weight !== '' && Number.isInteger(n) && n >= 0 && n <= 10_000;
  return (
    <ConfirmDialog
      title={`Set the Dubbo weight of ${i.host}:${i.port}`}
      confirmLabel="Set weight"
      onClose={props.onClose}
      onConfirm={async (reason) => {
        if (!valid) throw new Error('The weight must be an integer from 0 to 10000.');
        await api('/api/registry/controls', { method: 'POST', body: { action: 'weight', instanceId: i.id, weight: n, reason } });
        props.onDone();
      }}
    >
      <p>Consumers balance load by weight (Dubbo's default is 100). Current weight: {i.weight}.</p>
      <label class="field">
        <span>New weight (0–10000)</span>
        <input
          class="input"
          type="number"
          min={0}
          max={10000}
          step={1}
          value={weight}
          data-testid="control-weight-input"
          onInput={(e) => setWeight(e.currentTarget.value)}
        />
      </label>
      {!valid && <div class="field-error">An integer from 0 to 10000.</div>}
    </ConfirmDialog>
  );
}

function Provides({ detail }: { detail: ApplicationDetail }) {
  const [filter, setFilter] = useState('');
  const f = filter.trim().toLowerCase();
  const rows = useMemo(
    () =>
      detail.provides.filter(
        (s) => !f || s.interface.toLowerCase().includes(f) || s.methods.some((m) => m.toLowerCase().includes(f)),
      ),
    [detail.provides, f],
  );
  const paging = useClientPage(rows, 200, f);
  if (detail.provides.length === 0)
    return (
      <Empty title="No Dubbo services">This application provides no Dubbo service (HTTP-only applications list none).</Empty>
    );
  return (
    <Section
      title="Dubbo services provided"
      actions={<Filter value={filter} onInput={setFilter} placeholder="Filter interfaces, methods…" />}
    >
      <table class="table" data-testid="services-table">
        <thead>
          <tr>
            <th>Interface</th>
            <th>Group</th>
            <th>Version</th>
            <th>Protocols</th>
            <th>Methods</th>
            <th class="num">Providers</th>
            <th>Consumers</th>
          </tr>
        </thead>
        <tbody>
          {paging.pageItems.map((s) => (
            <tr key={s.key} data-testid="service-row">
              <td class="mono">{s.interface}</td>
              <td>{s.group || <span class="muted">–</span>}</td>
              <td>{s.version || <span class="muted">–</span>}</td>
              <td>{s.protocols.join(', ')}</td>
              <td>
                <Methods methods={s.methods} />
              </td>
              <td class="num">{s.providers}</td>
              <td>
                <AppLinks names={s.consumers} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <ClientPager paging={paging} />
    </Section>
  );
}

function AppLinks({ names }: { names: string[] }) {
  if (names.length === 0) return <span class="muted">–</span>;
  return (
    <span class="chips">
      {names.slice(0, 20).map((n) => (
        <a key={n} class="chip" href={`/catalog/${enc(n)}`}>
          {n}
        </a>
      ))}
      {names.length > 20 && <span class="muted small">+{names.length - 20}</span>}
    </span>
  );
}

function Consumes({ detail }: { detail: ApplicationDetail }) {
  const paging = useClientPage(detail.consumes, 200);
  if (detail.consumes.length === 0)
    return <Empty title="Consumes nothing">No consumer registration names this application.</Empty>;
  return (
    <Section title="Dubbo services consumed">
      <table class="table">
        <thead>
          <tr>
            <th>Service key</th>
            <th>Provided by</th>
          </tr>
        </thead>
        <tbody>
          {paging.pageItems.map((c) => (
            <tr key={c.key}>
              <td class="mono">{c.key}</td>
              <td>{c.providers.length ? <AppLinks names={c.providers} /> : <Badge tone="warn">no provider</Badge>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <ClientPager paging={paging} />
    </Section>
  );
}

const CONTROL_TONE = { pending: 'info', active: 'accent', reverted: 'muted', superseded: 'muted', failed: 'bad' } as const;

function Controls(props: { controls: NativeControl[]; error: unknown; onChanged: () => void }) {
  const { me } = useStore(session);
  const editable = canEdit(me);
  const [pending, setPending] = useState<NativeControl | undefined>(undefined);
  const paging = useClientPage(props.controls, 100);
  return (
    <Section title="Native controls (record)" testid="controls-record">
      <ErrorNote error={props.error} />
      {props.controls.length === 0 ? (
        <p class="muted">No control was ever written for this application.</p>
      ) : (
        <table class="table">
          <thead>
            <tr>
              <th>When</th>
              <th>Action</th>
              <th>Instance</th>
              <th>State</th>
              <th>Who</th>
              <th>Reason</th>
              {editable && <th />}
            </tr>
          </thead>
          <tbody>
            {paging.pageItems.map((c) => (
              <tr key={c._id} data-testid="control-row">
                <td>
                  <Time value={c.createdAt} />
                </td>
                <td>
                  {c.action}
                  {c.action === 'weight' ? ` → ${c.weight}` : ''}
                </td>
                <td class="mono">
                  {c.host}:{c.port} <span class="muted small">{c.registry}</span>
                </td>
                <td>
                  <Badge tone={CONTROL_TONE[c.state]} title={c.error}>
                    {c.state}
                  </Badge>
                  {c.revertedAt && (
                    <span class="muted small">
                      {' '}
                      by {c.revertedBy} <Time value={c.revertedAt} />
                    </span>
                  )}
                </td>
                <td>
                  {c.actor} <span class="muted small">{c.from}</span>
                </td>
                <td>{c.reason || <span class="muted">–</span>}</td>
                {editable && (
                  <td>
                    {c.state === 'active' && (
                      <button type="button" class="btn btn-small" data-testid="control-revert" onClick={() => setPending(c)}>
                        Revert
                      </button>
                    )}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ClientPager paging={paging} />
      {pending && (
        <ControlDialog
          pending={{ kind: 'revert', control: pending }}
          onClose={() => setPending(undefined)}
          onDone={props.onChanged}
        />
      )}
    </Section>
  );
}
