import { useEffect, useState } from 'preact/hooks';
import { withQuery } from '../api';
import { Badge, Empty, ErrorNote, Loading, Pager, type Tone } from '../components/ui';
import { fmtMs, fmtTime, fromLocalInput, toLocalInput } from '../format';
import { useApi } from '../hooks';
import { href, navigate, setQuery, useRoute } from '../router';
import type { CallRecord, Outcome, RecordsPage } from '../types';

const FIELDS = ['from', 'to', 'application', 'caller', 'callee', 'status', 'minLatencyMs', 'traceId', 'outcome'] as const;
type Field = (typeof FIELDS)[number];
type Form = Record<Field, string>;

const OUTCOME_TONE: Record<Outcome, Tone> = { success: 'ok', error: 'bad', limited: 'warn', broken: 'warn', degraded: 'accent' };
const PAGE_SIZE = 50;

/** The form holds what the user types; the URL holds the search that ran (shareable, back-button friendly). */
function formFromQuery(query: URLSearchParams): Form {
  const form = {} as Form;
  for (const f of FIELDS) {
    const v = query.get(f) ?? '';
    form[f] = (f === 'from' || f === 'to') && /^\d+$/.test(v) ? toLocalInput(Number(v)) : v;
  }
  return form;
}

export function RecordsScreen() {
  const { query } = useRoute();
  const [form, setForm] = useState<Form>(() => formFromQuery(query));
  const [formError, setFormError] = useState<string | undefined>(undefined);
  const [open, setOpen] = useState<string | undefined>(undefined);
  const queryKey = query.toString();
  // a link (trace id, graph edge) or the back button changes the search: the form follows
  useEffect(() => setForm(formFromQuery(query)), [queryKey]);
  const page = Math.max(1, Number(query.get('page') ?? 1) || 1);
  const params: Record<string, string> = {};
  for (const f of FIELDS) {
    const v = query.get(f);
    if (v) params[f] = v;
  }
  const records = useApi<RecordsPage>(withQuery('/api/stats/records', { ...params, page, pageSize: PAGE_SIZE }));

  const submit = (e?: Event) => {
    e?.preventDefault();
    const next: Record<string, string | undefined> = { page: undefined };
    for (const f of FIELDS) {
      const v = form[f].trim();
      if (f === 'from' || f === 'to') {
        const ms = fromLocalInput(v);
        if (v && ms === undefined) {
          setFormError(`"${f}" is not a date and time`);
          return;
        }
        next[f] = ms === undefined ? undefined : String(ms);
      } else if (f === 'status' || f === 'minLatencyMs') {
        if (v && !/^\d+$/.test(v)) {
          setFormError(`"${f === 'status' ? 'status' : 'min latency'}" must be a whole number`);
          return;
        }
        next[f] = v || undefined;
      } else if (f === 'traceId') {
        if (v && !/^[0-9a-f]{16,32}$/.test(v.toLowerCase())) {
          setFormError('A trace id is 16–32 hex characters');
          return;
        }
        next[f] = v.toLowerCase() || undefined;
      } else {
        next[f] = f === 'outcome' ? v || undefined : v.toLowerCase() || undefined;
      }
    }
    setFormError(undefined);
    setQuery(next, { push: true });
  };

  const set = (f: Field) => (e: Event) => setForm({ ...form, [f]: (e.currentTarget as HTMLInputElement).value });
  const quick = (minutes: number) => {
    const now = Date.now();
    setForm({ ...form, from: toLocalInput(now - minutes * 60_000), to: '' });
  };
  const items = records.data?.items ?? [];
  const searched = Object.keys(params).length > 0;

  return (
    <div class="screen" data-testid="screen-records">
      <div class="screen-head">
        <h1>Call records</h1>
        <span class="muted small">slow, failed, blocked and sampled calls kept by the agents (7 days)</span>
      </div>
      <form class="search-form" onSubmit={submit} data-testid="records-form">
        <label class="field">
          <span>From</span>
          <input class="input" type="datetime-local" value={form.from} onInput={set('from')} data-testid="records-from" />
        </label>
        <label class="field">
          <span>To</span>
          <input class="input" type="datetime-local" value={form.to} onInput={set('to')} data-testid="records-to" />
        </label>
        <label class="field">
          <span>Application</span>
          <input
            class="input"
            value={form.application}
            onInput={set('application')}
            placeholder="reporting app"
            data-testid="records-application"
          />
        </label>
        <label class="field">
          <span>Caller</span>
          <input class="input" value={form.caller} onInput={set('caller')} data-testid="records-caller" />
        </label>
        <label class="field">
          <span>Callee</span>
          <input class="input" value={form.callee} onInput={set('callee')} data-testid="records-callee" />
        </label>
        <label class="field field-narrow">
          <span>Status</span>
          <input
            class="input"
            inputMode="numeric"
            value={form.status}
            onInput={set('status')}
            placeholder="503"
            data-testid="records-status"
          />
        </label>
        <label class="field field-narrow">
          <span>Min latency (ms)</span>
          <input
            class="input"
            inputMode="numeric"
            value={form.minLatencyMs}
            onInput={set('minLatencyMs')}
            data-testid="records-min-latency"
          />
        </label>
        <label class="field">
          <span>Trace id</span>
          <input class="input mono" value={form.traceId} onInput={set('traceId')} data-testid="records-trace-id" />
        </label>
        <label class="field field-narrow">
          <span>Outcome</span>
          <select class="input" value={form.outcome} onChange={set('outcome')} data-testid="records-outcome">
            <option value="">any</option>
            <option value="success">success</option>
            <option value="error">error</option>
            <option value="limited">limited</option>
            <option value="broken">broken</option>
            <option value="degraded">degraded</option>
          </select>
        </label>
        <div class="form-actions">
          <button class="btn btn-primary" type="submit" data-testid="records-search">
            Search
          </button>
          <button
            class="btn"
            type="button"
            onClick={() => {
              setForm(formFromQuery(new URLSearchParams()));
              navigate('/records');
            }}
          >
            Clear
          </button>
          <span class="muted small">
            last{' '}
            {[15, 60, 360].map((m) => (
              <button key={m} type="button" class="link" onClick={() => quick(m)}>
                {m < 60 ? `${m} min` : `${m / 60} h`}
              </button>
            ))}
          </span>
        </div>
      </form>
      {formError && (
        <div class="note note-bad" data-testid="records-form-error">
          {formError}
        </div>
      )}
      <ErrorNote error={records.error} stale={records.data !== undefined} />
      {records.data === undefined ? (
        records.loading ? (
          <Loading />
        ) : null
      ) : items.length === 0 ? (
        <Empty title={searched ? 'No call record matches' : 'No call records yet'} testid="records-empty">
          {searched
            ? 'Widen the time range or remove a filter.'
            : 'Agents keep every failed, slow or blocked call and a sample of the others; they appear here within seconds.'}
        </Empty>
      ) : (
        <>
          <table class="table table-hover" data-testid="records-table">
            <thead>
              <tr>
                <th>Time</th>
                <th>Reported by</th>
                <th>Caller → callee</th>
                <th>Call</th>
                <th class="num">Status</th>
                <th class="num">Latency</th>
                <th>Outcome</th>
                <th>Kept</th>
                <th>Trace</th>
              </tr>
            </thead>
            <tbody>
              {items.map((r) => [
                <tr
                  key={r.id}
                  data-testid="record-row"
                  data-trace={r.traceId}
                  class={`clickable ${open === r.id ? 'open' : ''}`}
                  onClick={() => setOpen(open === r.id ? undefined : r.id)}
                >
                  <td class="nowrap small">{fmtTime(r.at)}</td>
                  <td>
                    {r.application} <span class="muted small">{r.direction === 'inbound' ? 'in' : 'out'}</span>
                  </td>
                  <td class="small">
                    {r.caller || <span class="muted">?</span>} → {r.callee || <span class="muted">?</span>}
                  </td>
                  <td class="mono small clip" title={callText(r)}>
                    {callText(r)}
                  </td>
                  <td class="num">{r.status || <span class="muted">–</span>}</td>
                  <td class="num">{fmtMs(r.latencyMs)}</td>
                  <td>
                    <Badge tone={OUTCOME_TONE[r.outcome]}>{r.outcome}</Badge>
                  </td>
                  <td class="small muted">{r.kept}</td>
                  <td class="mono small" title={r.traceId}>
                    {r.traceId.slice(0, 12)}…
                  </td>
                </tr>,
                open === r.id && (
                  <tr key={`${r.id}-detail`} class="detail-row" data-testid="record-detail">
                    <td colSpan={9}>
                      <RecordDetail record={r} />
                    </td>
                  </tr>
                ),
              ])}
            </tbody>
          </table>
          <Pager
            page={page}
            pageSize={PAGE_SIZE}
            hasMore={records.data?.hasMore}
            shown={items.length}
            onPage={(p) => setQuery({ page: p === 1 ? undefined : p }, { push: true })}
          />
        </>
      )}
    </div>
  );
}

const callText = (r: CallRecord) => (r.protocol === 'http' ? `${r.method} ${r.path}` : `${r.method}#${r.path}`);

function RecordDetail({ record: r }: { record: CallRecord }) {
  const details = Object.entries(r.details ?? {});
  return (
    <div class="kv">
      <span>Started</span>
      <span>
        {fmtTime(r.at)} <span class="muted small">({r.at} ms)</span>
      </span>
      <span>Trace id</span>
      <span>
        <code>{r.traceId}</code>{' '}
        <a class="small" href={href('/records', { traceId: r.traceId })} data-testid="record-trace-link">
          all calls of this trace
        </a>
      </span>
      <span>Instance</span>
      <code>{r.instanceId}</code>
      <span>Protocol</span>
      <span>
        {r.protocol} · {r.direction}
      </span>
      <span>Call</span>
      <code class="wrap">{callText(r)}</code>
      {r.ruleId && (
        <>
          <span>Rule</span>
          <a href={`/rules/edit/${encodeURIComponent(r.application)}/${encodeURIComponent(r.ruleId)}`} class="mono">
            {r.ruleId}
          </a>
        </>
      )}
      {details.map(([k, v]) => [
        <span key={`k${k}`}>{k}</span>,
        <code key={`v${k}`} class="wrap">
          {v}
        </code>,
      ])}
      <span>Record id</span>
      <code class="small">{r.id}</code>
    </div>
  );
}
