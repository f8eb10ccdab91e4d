import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, ApiError, describeError, enc, request, withQuery } from '../api';
import { ConfirmDialog } from '../components/dialog';
import { JsonDiff } from '../components/diff';
import { LastPush, notePush } from '../components/push';
import { Badge, Empty, ErrorNote, Filter, Loading, Pager, Section, Segmented, Time } from '../components/ui';
import { useApi, useDebounced } from '../hooks';
import { useLiveRefresh } from '../live';
import { href, navigate, setQuery, useRoute } from '../router';
import { canEdit, session } from '../session';
import { useStore } from '../store';
import type { CommitResult, Page, Rule, RuleKind, RuleListItem, RuleRevision, RuleSetView, ValidateResult } from '../types';

/**
 * /rules                         list, filters
 * /rules/new?application=&kind=  editor for a new rule
 * /rules/edit/:app/:id           editor for a stored rule
 * /rules/history/:app            revisions, rollback
 */
export function RulesScreen() {
  const { path } = useRoute();
  const parts = path.split('/').map(decodeURIComponent);
  if (parts[2] === 'new') return <RuleEditor key="new" />;
  if (parts[2] === 'edit' && parts[3] && parts[4])
    return <RuleEditor key={`${parts[3]}/${parts[4]}`} app={parts[3]} id={parts[4]} />;
  if (parts[2] === 'history' && parts[3]) return <RuleHistory app={parts[3]} />;
  return <RulesList />;
}

const KIND_TONE = { limit: 'info', breaker: 'warn', degrade: 'accent' } as const;

/** What a write sends: the rule without the list's bookkeeping fields and without its id. */
function editable(rule: Partial<RuleListItem>): Record<string, unknown> {
  const { id: _id, targetKey: _t, revision: _r, updatedAt: _u, updatedBy: _b, ...rest } = rule;
  return rest;
}

const PAGE_SIZE = 100;

function RulesList() {
  const { query } = useRoute();
  const { me } = useStore(session);
  const writable = canEdit(me);
  const [appInput, setAppInput] = useState(query.get('application') ?? '');
  const application = useDebounced(appInput.trim().toLowerCase(), 300);
  const kind = query.get('kind') ?? '';
  const enabled = query.get('enabled') ?? '';
  const page = Math.max(1, Number(query.get('page') ?? 1) || 1);
  useEffect(() => {
    if ((query.get('application') ?? '') !== application) setQuery({ application, page: undefined });
  }, [application]);
  // a link to another application's rules (or the back button) moves the filter too
  const queryApplication = query.get('application') ?? '';
  useEffect(() => {
    if (queryApplication !== application) setAppInput(queryApplication);
  }, [queryApplication]);

  const list = useApi<Page<RuleListItem>>(withQuery('/api/rules', { application, kind, enabled, page, pageSize: PAGE_SIZE }));
  const set = useApi<RuleSetView>(application ? `/api/applications/${enc(application)}/rules` : null);
  useLiveRefresh(
    ['rules'],
    () => {
      list.reload();
      set.reload();
    },
    (_e, p) => !application || p.application === application,
    1000,
  );
  const [deleting, setDeleting] = useState<RuleListItem | undefined>(undefined);
  const [busy, setBusy] = useState<string | undefined>(undefined);
  const [actionError, setActionError] = useState<unknown>(undefined);

  const toggle = async (rule: RuleListItem) => {
    setBusy(rule.id);
    setActionError(undefined);
    try {
      const body = {
        rule: { ...editable(rule), enabled: !rule.enabled },
        reason: rule.enabled ? 'disabled from the dashboard' : 'enabled from the dashboard',
      };
      const result = await api<CommitResult>(`/api/applications/${enc(rule.application)}/rules/${enc(rule.id)}`, {
        method: 'PUT',
        body,
      });
      if (result.changed) notePush(rule.application, result.revision, `${rule.enabled ? 'Disabled' : 'Enabled'} ${rule.id}`);
      list.reload();
      set.reload();
    } catch (err) {
      setActionError(err);
    } finally {
      setBusy(undefined);
    }
  };

  const items = list.data?.items ?? [];
  const filtered = !!(application || kind || enabled);
  return (
    <div class="screen" data-testid="screen-rules">
      <div class="screen-head">
        <h1>Rules</h1>
        {set.data && (
          <Badge tone="accent">
            {application} at revision {set.data.revision}
          </Badge>
        )}
        <div class="spacer" />
        {application && (
          <a class="btn btn-small" href={`/rules/history/${enc(application)}`} data-testid="rules-history-link">
            History & rollback
          </a>
        )}
        {writable && (
          <a class="btn btn-primary" href={href('/rules/new', { application })} data-testid="rule-new">
            + New rule
          </a>
        )}
      </div>
      <LastPush />
      <div class="toolbar">
        <Filter value={appInput} onInput={setAppInput} placeholder="Application…" testid="rules-filter-application" />
        <Segmented
          value={kind}
          testid="rules-filter-kind"
          options={[
            { value: '', label: 'All kinds' },
            { value: 'limit', label: 'Limit' },
            { value: 'breaker', label: 'Breaker' },
            { value: 'degrade', label: 'Degrade' },
          ]}
          onChange={(value) => setQuery({ kind: value, page: undefined })}
        />
        <select
          class="input"
          value={enabled}
          data-testid="rules-filter-enabled"
          onChange={(e) => setQuery({ enabled: e.currentTarget.value, page: undefined })}
        >
          <option value="">enabled or not</option>
          <option value="true">enabled</option>
          <option value="false">disabled</option>
        </select>
        <span class="muted small">{list.data ? `${list.data.total} rule${list.data.total === 1 ? '' : 's'}` : ''}</span>
      </div>
      <ErrorNote error={list.error ?? actionError} stale={list.data !== undefined} />
      {set.data && set.data.conflicts.length > 0 && (
        <div class="note note-warn" data-testid="rule-conflicts">
          <strong>
            {set.data.conflicts.length} conflict{set.data.conflicts.length === 1 ? '' : 's'} in {application}:
          </strong>
          <ul class="issues">
            {set.data.conflicts.map((c) => (
              <li key={c.kind + c.ruleIds.join()}>
                <Badge tone={c.kind === 'contradiction' ? 'bad' : 'warn'}>{c.kind}</Badge> {c.message}
              </li>
            ))}
          </ul>
        </div>
      )}
      {list.data === undefined ? (
        list.loading ? (
          <Loading />
        ) : null
      ) : items.length === 0 ? (
        filtered ? (
          <Empty title="No rule matches">Change the filters{writable ? ', or create a rule' : ''}.</Empty>
        ) : (
          <Empty title="No rules yet">
            Rules protect applications: <b>limit</b> (rate or concurrency), <b>breaker</b> (stop calling a failing dependency),{' '}
            <b>degrade</b> (answer with a fallback). {writable ? 'Create one with “New rule”.' : 'An operator can create them.'}
          </Empty>
        )
      ) : (
        <>
          <table class="table table-hover" data-testid="rules-table">
            <thead>
              <tr>
                <th>Rule</th>
                <th>Application</th>
                <th>Kind</th>
                <th>Target</th>
                <th>State</th>
                <th class="num">Revision</th>
                <th>Updated</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {items.map((r) => (
                <tr key={`${r.application}/${r.id}`} data-testid="rules-row" data-rule-id={r.id}>
                  <td>
                    <a class="mono strong" href={`/rules/edit/${enc(r.application)}/${enc(r.id)}`}>
                      {r.id}
                    </a>
                    {r.description && <div class="muted small clip">{r.description}</div>}
                  </td>
                  <td>
                    <a href={href('/rules', { application: r.application })} onClick={() => setAppInput(r.application)}>
                      {r.application}
                    </a>
                  </td>
                  <td>
                    <Badge tone={KIND_TONE[r.kind]}>{r.kind}</Badge>
                  </td>
                  <td class="mono small clip" title={r.targetKey}>
                    {r.targetKey}
                  </td>
                  <td>
                    {writable ? (
                      <button
                        type="button"
                        class={`toggle ${r.enabled ? 'on' : ''}`}
                        disabled={busy === r.id}
                        aria-pressed={r.enabled}
                        title={r.enabled ? 'enabled: click to disable' : 'disabled: click to enable'}
                        data-testid="rule-toggle"
                        onClick={() => void toggle(r)}
                      >
                        {r.enabled ? 'enabled' : 'disabled'}
                      </button>
                    ) : (
                      <Badge tone={r.enabled ? 'ok' : 'muted'}>{r.enabled ? 'enabled' : 'disabled'}</Badge>
                    )}
                  </td>
                  <td class="num">{r.revision}</td>
                  <td class="small">
                    <Time value={r.updatedAt} /> <span class="muted">by {r.updatedBy}</span>
                  </td>
                  <td class="actions-col">
                    <a class="btn btn-small" href={`/rules/history/${enc(r.application)}`}>
                      History
                    </a>
                    {writable && (
                      <button
                        type="button"
                        class="btn btn-small btn-danger-outline"
                        data-testid="rule-delete"
                        onClick={() => setDeleting(r)}
                      >
                        Delete
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pager
            page={page}
            pageSize={PAGE_SIZE}
            total={list.data?.total}
            shown={items.length}
            onPage={(p) => setQuery({ page: p === 1 ? undefined : p }, { push: true })}
          />
        </>
      )}
      {deleting && (
        <ConfirmDialog
          title={`Delete rule ${deleting.id}?`}
          confirmLabel="Delete"
          danger
          onClose={() => setDeleting(undefined)}
          onConfirm={async (reason) => {
            const result = await api<CommitResult>(
              withQuery(`/api/applications/${enc(deleting.application)}/rules/${enc(deleting.id)}`, { reason }),
              { method: 'DELETE' },
            );
            if (result.changed) notePush(deleting.application, result.revision, `Deleted ${deleting.id}`);
            list.reload();
            set.reload();
          }}
        >
          <p>
            A new revision of <b>{deleting.application}</b> without this {deleting.kind} rule is pushed to its agents. It can be
            undone from the history (rollback).
          </p>
          <p class="mono small">{deleting.targetKey}</p>
        </ConfirmDialog>
      )}
    </div>
  );
}

// ---- editor --------------------------------------------------------------------------------------

function template(kind: RuleKind, application: string): Record<string, unknown> {
  const app = application || 'my-app';
  switch (kind) {
    case 'limit':
      return {
        kind: 'limit',
        application: app,
        enabled: true,
        description: 'at most 100 calls per second into each instance',
        target: { direction: 'inbound', resource: { type: 'application' } },
        limit: { mode: 'qps', permitsPerSec: 100 },
      };
    case 'breaker':
      return {
        kind: 'breaker',
        application: app,
        enabled: true,
        description: 'stop calling the callee while half of the calls fail',
        target: { direction: 'outbound', callee: 'callee-app', resource: { type: 'application' } },
        breaker: { strategy: 'errorRatio', threshold: 0.5, windowMs: 10000, minCalls: 20, openMs: 5000, probes: 1 },
      };
    case 'degrade':
      return {
        kind: 'degrade',
        application: app,
        enabled: true,
        description: 'answer rejected calls to the callee with a fallback',
        target: { direction: 'outbound', callee: 'callee-app', resource: { type: 'application' } },
        force: false,
        fallback: { http: { status: 200, headers: { 'content-type': 'application/json' }, body: '[]' }, rpc: { value: null } },
      };
  }
}

const pretty = (value: unknown) => JSON.stringify(value, null, 2);

type Parsed = { ok: true; value: Record<string, unknown> } | { ok: false; message: string };

function parseText(text: string): Parsed {
  if (!text.trim()) return { ok: false, message: 'The rule is empty.' };
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      return { ok: false, message: 'The rule must be a JSON object.' };
    return { ok: true, value: value as Record<string, unknown> };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const at = /position (\d+)/.exec(message);
    if (at) {
      const pos = Number(at[1]);
      const before = text.slice(0, pos).split('\n');
      return {
        ok: false,
        message: `JSON syntax: ${message} (line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1})`,
      };
    }
    return { ok: false, message: `JSON syntax: ${message}` };
  }
}

interface Base {
  revision: number;
  rule: Rule | null;
}

function RuleEditor(props: { app?: string; id?: string }) {
  const { query } = useRoute();
  const { me } = useStore(session);
  const writable = canEdit(me);
  const isNew = props.id === undefined;
  const [appInput, setAppInput] = useState(props.app ?? query.get('application') ?? '');
  const app = (props.app ?? appInput).trim().toLowerCase();
  const debouncedApp = useDebounced(app, 400);
  const [kind, setKind] = useState<RuleKind>((query.get('kind') as RuleKind | null) ?? 'limit');
  const [text, setText] = useState(isNew ? pretty(template(kind, app)) : '');
  const [reason, setReason] = useState('');
  const [base, setBase] = useState<Base | undefined>(undefined);
  const [loadError, setLoadError] = useState<unknown>(undefined);
  const [validation, setValidation] = useState<ValidateResult | undefined>(undefined);
  const [validating, setValidating] = useState(false);
  const [validateRefused, setValidateRefused] = useState<string | undefined>(undefined);
  const [saveError, setSaveError] = useState<unknown>(undefined);
  const [saving, setSaving] = useState(false);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const [deleting, setDeleting] = useState(false);
  const pristine = useRef(true);

  const parsed = useMemo(() => parseText(text), [text]);
  const debouncedText = useDebounced(text, 450);

  // the stored set: the revision this edit is based on (If-Match) and the rule as stored
  const loadBase = async (keepText: boolean) => {
    if (!debouncedApp && isNew) {
      setBase(undefined);
      return;
    }
    const target = isNew ? debouncedApp : props.app!;
    try {
      setLoadError(undefined);
      const view = await api<RuleSetView>(`/api/applications/${enc(target)}/rules`);
      const rule = isNew ? null : (view.rules.find((r) => r.id === props.id) ?? null);
      if (!isNew && !rule) throw new ApiError(`${target} has no rule "${props.id}" at revision ${view.revision} (deleted?)`, 404);
      setBase({ revision: view.revision, rule });
      if (!keepText && rule) setText(pretty(editable(rule)));
    } catch (err) {
      setLoadError(err);
    }
  };
  useEffect(() => {
    void loadBase(false);
  }, [debouncedApp, props.app, props.id]);

  // a new rule's template follows the application typed, until the text is edited
  useEffect(() => {
    if (isNew && pristine.current) setText(pretty(template(kind, app)));
  }, [kind, app]);

  // validate on the server (dry run) once typing pauses
  useEffect(() => {
    const p = parseText(debouncedText);
    const target = isNew ? debouncedApp : props.app;
    if (!p.ok || !target) {
      setValidation(undefined);
      return;
    }
    const controller = new AbortController();
    setValidating(true);
    api<ValidateResult>(`/api/applications/${enc(target)}/rules/validate`, {
      method: 'POST',
      body: { rule: p.value, ...(props.id ? { id: props.id } : {}) },
      signal: controller.signal,
    }).then(
      (result) => {
        setValidation(result);
        setValidateRefused(undefined);
        setValidating(false);
      },
      (err: unknown) => {
        if (controller.signal.aborted) return;
        setValidating(false);
        if (err instanceof ApiError && err.status === 403) {
          // the dry run is a POST: a server that asks the operator role for it refuses viewers
          setValidateRefused(err.message);
          setValidation(undefined);
          return;
        }
        setValidation({
          valid: false,
          issues: err instanceof ApiError && err.issues.length > 0 ? err.issues : [{ path: '', message: describeError(err) }],
          conflicts: [],
        });
      },
    );
    return () => controller.abort();
  }, [debouncedText, debouncedApp, props.app, props.id]);

  const upToDate = debouncedText === text;
  const canSave = writable && parsed.ok && !!app && !!base && upToDate && !validating && validation?.valid === true && !saving;
  const before = base?.rule ? editable(base.rule) : null;
  const after = parsed.ok ? parsed.value : null;

  const save = async () => {
    if (!parsed.ok || !base) return;
    setSaving(true);
    setSaveError(undefined);
    setNotice(undefined);
    try {
      const path = isNew ? `/api/applications/${enc(app)}/rules` : `/api/applications/${enc(app)}/rules/${enc(props.id!)}`;
      const { data } = await request<CommitResult>(path, {
        method: isNew ? 'POST' : 'PUT',
        body: { rule: parsed.value, reason },
        headers: { 'if-match': `"${base.revision}"` },
      });
      if (!data.changed) {
        setNotice('Nothing changed: the rule is identical to the stored one, so no revision was made.');
        return;
      }
      const id = data.rule?.id ?? data.changes[0]?.ruleId ?? props.id ?? '';
      notePush(app, data.revision, isNew ? `Created ${id}` : `Updated ${id}`);
      setReason('');
      if (isNew && id) {
        navigate(`/rules/edit/${enc(app)}/${enc(id)}`, { replace: true });
      } else {
        const stored = data.rule ?? (parsed.value as Rule);
        setBase({ revision: data.revision, rule: stored });
        // show the rule as stored, defaults included
        pristine.current = true;
        setText(pretty(editable(stored)));
      }
    } catch (err) {
      setSaveError(err);
    } finally {
      setSaving(false);
    }
  };

  const issues = validation?.issues ?? [];
  return (
    <div class="screen" data-testid="screen-rule-editor">
      <div class="crumbs">
        <a href={href('/rules', { application: app || undefined })}>Rules</a> ›
      </div>
      <div class="screen-head">
        <h1>{isNew ? 'New rule' : <span class="mono">{props.id}</span>}</h1>
        {base && app && (
          <Badge tone="accent">
            {app} at revision {base.revision}
          </Badge>
        )}
        <div class="spacer" />
        {app && (
          <a class="btn btn-small" href={`/rules/history/${enc(app)}`}>
            History
          </a>
        )}
        {!isNew && writable && (
          <button
            type="button"
            class="btn btn-small btn-danger-outline"
            onClick={() => setDeleting(true)}
            data-testid="rule-delete"
          >
            Delete
          </button>
        )}
      </div>
      <LastPush application={app} />
      {!writable && <div class="note note-info">Your role is {me?.role}: you can read and validate rules, not change them.</div>}
      <ErrorNote error={loadError} />
      {!isNew && !base && !loadError && <Loading />}
      {(isNew || base) && (
        <div class="editor-grid">
          <div class="editor-main">
            {isNew && (
              <div class="toolbar">
                <label class="field field-inline">
                  <span>Application</span>
                  <input
                    class="input"
                    value={appInput}
                    placeholder="orders"
                    data-testid="rule-application"
                    onInput={(e) => setAppInput(e.currentTarget.value)}
                  />
                </label>
                <label class="field field-inline">
                  <span>Template</span>
                  <Segmented
                    value={kind}
                    testid="rule-kind"
                    options={[
                      { value: 'limit', label: 'limit' },
                      { value: 'breaker', label: 'breaker' },
                      { value: 'degrade', label: 'degrade' },
                    ]}
                    onChange={(k) => {
                      if (!pristine.current && !window.confirm('Replace the text with the template?')) return;
                      pristine.current = true;
                      setKind(k);
                      setText(pretty(template(k, app)));
                    }}
                  />
                </label>
              </div>
            )}
            <textarea
              class="input code-editor"
              spellcheck={false}
              value={text}
              rows={Math.min(40, Math.max(16, text.split('\n').length + 2))}
              data-testid="rule-editor"
              aria-label="rule JSON"
              onInput={(e) => {
                pristine.current = false;
                setText(e.currentTarget.value);
              }}
              onKeyDown={(e) => {
                if (e.key === 'Tab' && !e.shiftKey) {
                  e.preventDefault();
                  const el = e.currentTarget;
                  const { selectionStart: s, selectionEnd: end } = el;
                  const next = `${text.slice(0, s)}  ${text.slice(end)}`;
                  pristine.current = false;
                  setText(next);
                  requestAnimationFrame(() => el.setSelectionRange(s + 2, s + 2));
                }
              }}
            />
            <div class="validation" data-testid="rule-validation" data-valid={validation?.valid === true ? 'true' : 'false'}>
              {!parsed.ok ? (
                <div class="note note-bad" data-testid="rule-json-error">
                  {parsed.message}
                </div>
              ) : !app ? (
                <div class="note note-info">Name the application to validate the rule.</div>
              ) : validateRefused ? (
                <div class="note note-info" data-testid="rule-validate-refused">
                  The server refused the dry run: {validateRefused}
                </div>
              ) : validating || !upToDate ? (
                <div class="muted small">Validating…</div>
              ) : validation?.valid ? (
                <div class="note note-ok" data-testid="rule-valid">
                  Valid{validation.conflicts.length ? ', with conflicts:' : '.'}
                </div>
              ) : validation ? (
                <div class="note note-bad">
                  <strong>
                    {issues.length} problem{issues.length === 1 ? '' : 's'}:
                  </strong>
                  <table class="issues-table" data-testid="rule-issues">
                    <tbody>
                      {issues.map((i) => (
                        <tr key={i.path + i.message} data-testid="rule-issue" data-path={i.path}>
                          <td class="mono">{i.path.replace(/^rule\.?/, '') || '(rule)'}</td>
                          <td>{i.message}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              ) : null}
              {validation && validation.conflicts.length > 0 && (
                <ul class="issues" data-testid="rule-conflicts">
                  {validation.conflicts.map((c) => (
                    <li key={c.kind + c.ruleIds.join()}>
                      <Badge tone={c.kind === 'contradiction' ? 'bad' : 'warn'}>{c.kind}</Badge> {c.message}
                    </li>
                  ))}
                </ul>
              )}
            </div>
          </div>
          <div class="editor-side">
            <Section title={isNew ? 'New rule' : `Changes against revision ${base?.revision ?? '…'}`}>
              {after ? (
                <JsonDiff before={before} after={after} testid="rule-diff" emptyText="No change from the stored rule." />
              ) : (
                <p class="muted">The diff appears when the JSON parses.</p>
              )}
            </Section>
            {writable && (
              <Section title="Save">
                <label class="field">
                  <span>Reason (audit log)</span>
                  <input
                    class="input"
                    value={reason}
                    maxLength={1000}
                    placeholder="why this change"
                    data-testid="rule-reason"
                    onInput={(e) => setReason(e.currentTarget.value)}
                  />
                </label>
                <ErrorNote error={saveError} />
                {saveError instanceof ApiError && saveError.status === 409 && (
                  <button
                    type="button"
                    class="btn btn-small"
                    onClick={() => void loadBase(true).then(() => setSaveError(undefined))}
                  >
                    Reload the stored revision (keeps your text)
                  </button>
                )}
                {notice && <div class="note note-info">{notice}</div>}
                <button
                  type="button"
                  class="btn btn-primary btn-block"
                  disabled={!canSave}
                  onClick={() => void save()}
                  data-testid="rule-save"
                >
                  {saving ? 'Saving…' : isNew ? 'Create rule' : 'Save as a new revision'}
                </button>
                <p class="muted small">
                  Saved with <code>If-Match: "{base?.revision ?? '…'}"</code>: if someone changed {app || 'the application'}'s
                  rules meanwhile, the save is refused instead of overwriting.
                </p>
              </Section>
            )}
          </div>
        </div>
      )}
      {deleting && props.id && (
        <ConfirmDialog
          title={`Delete rule ${props.id}?`}
          confirmLabel="Delete"
          danger
          onClose={() => setDeleting(false)}
          onConfirm={async (why) => {
            const result = await api<CommitResult>(
              withQuery(`/api/applications/${enc(app)}/rules/${enc(props.id!)}`, { reason: why }),
              {
                method: 'DELETE',
                ...(base ? { headers: { 'if-match': `"${base.revision}"` } } : {}),
              },
            );
            if (result.changed) notePush(app, result.revision, `Deleted ${props.id}`);
            navigate(href('/rules', { application: app }));
          }}
        >
          <p>A new revision without this rule is pushed to the agents of {app}. It can be undone from the history.</p>
        </ConfirmDialog>
      )}
    </div>
  );
}

// ---- history -----------------------------------------------------------------------------------

const HISTORY_PAGE = 20;
const REVISION_TONE = { create: 'ok', update: 'info', delete: 'bad', rollback: 'warn' } as const;

function RuleHistory({ app }: { app: string }) {
  const { query } = useRoute();
  const { me } = useStore(session);
  const writable = canEdit(me);
  const page = Math.max(1, Number(query.get('page') ?? 1) || 1);
  const history = useApi<Page<RuleRevision>>(
    withQuery(`/api/applications/${enc(app)}/rules/history`, { page, pageSize: HISTORY_PAGE }),
  );
  const current = useApi<RuleSetView>(`/api/applications/${enc(app)}/rules`);
  useLiveRefresh(
    ['rules'],
    () => {
      history.reload();
      current.reload();
    },
    (_e, p) => p.application === app,
    800,
  );
  const [open, setOpen] = useState<Set<number>>(new Set());
  const [rollback, setRollback] = useState<number | undefined>(undefined);
  const items = history.data?.items ?? [];
  const currentRevision = current.data?.revision;

  return (
    <div class="screen" data-testid="screen-rule-history">
      <div class="crumbs">
        <a href={href('/rules', { application: app })}>Rules</a> ›
      </div>
      <div class="screen-head">
        <h1>History of {app}</h1>
        {currentRevision !== undefined && <Badge tone="accent">current revision {currentRevision}</Badge>}
      </div>
      <LastPush application={app} />
      <ErrorNote error={history.error ?? current.error} stale={history.data !== undefined} />
      {history.data === undefined ? (
        history.loading ? (
          <Loading />
        ) : null
      ) : items.length === 0 ? (
        <Empty title="No revisions">{app} has never had a rule.</Empty>
      ) : (
        <>
          <div class="timeline">
            {items.map((r) => {
              const isOpen = open.has(r.revision);
              return (
                <div class="rev" key={r._id} data-testid="rule-history-row" data-revision={r.revision}>
                  <div class="rev-head">
                    <button
                      type="button"
                      class="link"
                      onClick={() => {
                        const next = new Set(open);
                        if (isOpen) next.delete(r.revision);
                        else next.add(r.revision);
                        setOpen(next);
                      }}
                    >
                      {isOpen ? '▾' : '▸'} <strong>revision {r.revision}</strong>
                    </button>
                    <Badge tone={REVISION_TONE[r.kind]}>{r.kind}</Badge>
                    {r.rollbackTo !== undefined && <span class="muted small">to revision {r.rollbackTo}</span>}
                    <span class="mono small">
                      {r.ruleIds.slice(0, 5).join(', ')}
                      {r.ruleIds.length > 5 ? ` +${r.ruleIds.length - 5}` : ''}
                    </span>
                    <span class="spacer" />
                    <span class="small">
                      {r.actor} <span class="muted">from {r.from}</span> · <Time value={r.at} />
                    </span>
                    {writable && currentRevision !== undefined && r.revision < currentRevision && (
                      <button
                        type="button"
                        class="btn btn-small"
                        data-testid="rule-rollback"
                        onClick={() => setRollback(r.revision)}
                      >
                        Roll back to here
                      </button>
                    )}
                    {r.revision === currentRevision && <Badge tone="ok">current</Badge>}
                  </div>
                  {r.reason && <div class="rev-reason">“{r.reason}”</div>}
                  {isOpen && (
                    <div class="rev-body">
                      {r.changes.map((c) => (
                        <div key={c.ruleId} class="rev-change">
                          <div class="small">
                            <span class="mono strong">{c.ruleId}</span>{' '}
                            <span class="muted">{c.before === null ? 'created' : c.after === null ? 'deleted' : 'changed'}</span>
                          </div>
                          <JsonDiff before={c.before} after={c.after} />
                        </div>
                      ))}
                    </div>
                  )}
                </div>
              );
            })}
          </div>
          <Pager
            page={page}
            pageSize={HISTORY_PAGE}
            total={history.data?.total}
            shown={items.length}
            onPage={(p) => setQuery({ page: p === 1 ? undefined : p }, { push: true })}
          />
        </>
      )}
      {rollback !== undefined && (
        <ConfirmDialog
          title={`Roll ${app} back to revision ${rollback}?`}
          confirmLabel="Roll back"
          danger
          onClose={() => setRollback(undefined)}
          onConfirm={async (reason) => {
            const { data } = await request<CommitResult>(`/api/applications/${enc(app)}/rules/rollback`, {
              method: 'POST',
              body: { toRevision: rollback, reason },
              ...(currentRevision !== undefined ? { headers: { 'if-match': `"${currentRevision}"` } } : {}),
            });
            if (data.changed) notePush(app, data.revision, `Rolled back to ${rollback}`);
            history.reload();
            current.reload();
          }}
        >
          <p>
            Undoes every revision after {rollback} (newest first) and writes the result as revision {(currentRevision ?? 0) + 1},
            which is pushed to the agents. Nothing is lost: the rollback itself can be rolled back.
          </p>
        </ConfirmDialog>
      )}
    </div>
  );
}
