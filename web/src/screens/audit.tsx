import { useEffect, useState } from 'preact/hooks';
import { withQuery } from '../api';
import { JsonDiff } from '../components/diff';
import { Badge, Empty, ErrorNote, Loading, Pager, type Tone } from '../components/ui';
import { fmtTime } from '../format';
import { useApi } from '../hooks';
import { useLiveRefresh } from '../live';
import { setQuery, useRoute } from '../router';
import type { AuditEntry, Page } from '../types';

const OUTCOME_TONE: Record<AuditEntry['outcome'], Tone> = { ok: 'ok', denied: 'bad', rejected: 'warn', failed: 'bad' };
const PAGE_SIZE = 50;
const FIELDS = ['actor', 'action', 'application', 'outcome', 'from', 'to'] as const;
type Field = (typeof FIELDS)[number];

const ACTIONS = [
  'rule.create',
  'rule.update',
  'rule.delete',
  'rule.rollback',
  'control.isolate',
  'control.weight',
  'control.revert',
  'token.create',
  'token.revoke',
  'auth.denied',
];

export function AuditScreen() {
  const { query } = useRoute();
  const fromQuery = () => {
    const f = {} as Record<Field, string>;
    for (const k of FIELDS) f[k] = query.get(k) ?? '';
    return f;
  };
  const [form, setForm] = useState<Record<Field, string>>(fromQuery);
  const queryKey = query.toString();
  useEffect(() => setForm(fromQuery()), [queryKey]);
  const [open, setOpen] = useState<string | undefined>(undefined);
  const page = Math.max(1, Number(query.get('page') ?? 1) || 1);
  const params: Record<string, string> = {};
  for (const k of FIELDS) {
    const v = query.get(k);
    if (!v) continue;
    if (k === 'from' || k === 'to') {
      const ms = new Date(v).getTime();
      if (!Number.isNaN(ms)) params[k] = new Date(ms).toISOString();
    } else params[k] = v;
  }
  const audit = useApi<Page<AuditEntry>>(withQuery('/api/audit', { ...params, page, pageSize: PAGE_SIZE }));
  useLiveRefresh(['rules'], () => page === 1 && audit.reload(), undefined, 1500);

  const submit = (e: Event) => {
    e.preventDefault();
    const next: Record<string, string | undefined> = { page: undefined };
    for (const k of FIELDS) next[k] = form[k].trim() || undefined;
    setQuery(next, { push: true });
  };
  const set = (k: Field) => (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value });
  const items = audit.data?.items ?? [];

  return (
    <div class="screen" data-testid="screen-audit">
      <div class="screen-head">
        <h1>Audit log</h1>
        <span class="muted small">every change and every refused attempt, newest first</span>
      </div>
      <form class="search-form" onSubmit={submit} data-testid="audit-form">
        <label class="field">
          <span>Who</span>
          <input class="input" value={form.actor} onInput={set('actor')} placeholder="token name" data-testid="audit-actor" />
        </label>
        <label class="field">
          <span>Action</span>
          <input class="input" list="audit-actions" value={form.action} onInput={set('action')} data-testid="audit-action" />
          <datalist id="audit-actions">
            {ACTIONS.map((a) => (
              <option key={a} value={a} />
            ))}
          </datalist>
        </label>
        <label class="field">
          <span>Application</span>
          <input class="input" value={form.application} onInput={set('application')} data-testid="audit-application" />
        </label>
        <label class="field field-narrow">
          <span>Outcome</span>
          <select class="input" value={form.outcome} onChange={set('outcome')} data-testid="audit-outcome">
            <option value="">any</option>
            <option value="ok">ok</option>
            <option value="denied">denied</option>
            <option value="rejected">rejected</option>
            <option value="failed">failed</option>
          </select>
        </label>
        <label class="field">
          <span>From</span>
          <input class="input" type="datetime-local" value={form.from} onInput={set('from')} />
        </label>
        <label class="field">
          <span>To</span>
          <input class="input" type="datetime-local" value={form.to} onInput={set('to')} />
        </label>
        <div class="form-actions">
          <button class="btn btn-primary" type="submit" data-testid="audit-search">
            Search
          </button>
        </div>
      </form>
      <ErrorNote error={audit.error} stale={audit.data !== undefined} />
      {audit.data === undefined ? (
        audit.loading ? (
          <Loading />
        ) : null
      ) : items.length === 0 ? (
        <Empty title="Nothing in the audit log" testid="audit-empty">
          {Object.keys(params).length
            ? 'No entry matches these filters.'
            : 'Changes to rules, native controls and tokens are recorded here.'}
        </Empty>
      ) : (
        <>
          <table class="table table-hover" data-testid="audit-table">
            <thead>
              <tr>
                <th>When</th>
                <th>Who</th>
                <th>Action</th>
                <th>Outcome</th>
                <th>Application / target</th>
                <th class="num">Revision</th>
                <th>Reason</th>
              </tr>
            </thead>
            <tbody>
              {items.map((a) => [
                <tr
                  key={a._id}
                  data-testid="audit-row"
                  class={`clickable ${open === a._id ? 'open' : ''}`}
                  onClick={() => setOpen(open === a._id ? undefined : a._id)}
                >
                  <td class="nowrap small">{fmtTime(a.at)}</td>
                  <td>
                    {a.actor} {a.role && <span class="muted small">{a.role}</span>}
                    <div class="muted small">{a.from}</div>
                  </td>
                  <td class="mono small">{a.action}</td>
                  <td>
                    <Badge tone={OUTCOME_TONE[a.outcome]}>
                      {a.outcome} {a.status}
                    </Badge>
                  </td>
                  <td class="small clip">
                    {a.application && <b>{a.application}</b>} <span class="mono muted">{a.target}</span>
                  </td>
                  <td class="num">{a.revision ?? <span class="muted">–</span>}</td>
                  <td class="small clip">{a.reason || a.detail || <span class="muted">–</span>}</td>
                </tr>,
                open === a._id && (
                  <tr key={`${a._id}-detail`} class="detail-row" data-testid="audit-detail">
                    <td colSpan={7}>
                      {a.detail && (
                        <p class="small">
                          <b>Detail:</b> {a.detail}
                        </p>
                      )}
                      {a.before !== undefined || a.after !== undefined ? (
                        <JsonDiff before={a.before ?? null} after={a.after ?? null} testid="audit-diff" />
                      ) : (
                        <p class="muted small">No before/after recorded for this entry.</p>
                      )}
                    </td>
                  </tr>
                ),
              ])}
            </tbody>
          </table>
          <Pager
            page={page}
            pageSize={PAGE_SIZE}
            total={audit.data?.total}
            shown={items.length}
            onPage={(p) => setQuery({ page: p === 1 ? undefined : p }, { push: true })}
          />
        </>
      )}
    </div>
  );
}
