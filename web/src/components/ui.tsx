import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { ApiError, describeError } from '../api';
import { fmtAgo, fmtTime } from '../format';
import type { InstanceStatus, SourceKind, SyncState } from '../types';

export type Tone = 'ok' | 'warn' | 'bad' | 'info' | 'muted' | 'zk' | 'eureka' | 'accent';

export function Badge(props: { tone?: Tone; title?: string; children: ComponentChildren; testid?: string }) {
  return (
    <span class={`badge badge-${props.tone ?? 'muted'}`} title={props.title} data-testid={props.testid}>
      {props.children}
    </span>
  );
}

const STATUS_TONE: Record<InstanceStatus, Tone> = {
  UP: 'ok',
  STARTING: 'info',
  UNKNOWN: 'muted',
  DISABLED: 'warn',
  OUT_OF_SERVICE: 'warn',
  DOWN: 'bad',
};

export function StatusBadge({ status }: { status: InstanceStatus }) {
  return <Badge tone={STATUS_TONE[status] ?? 'muted'}>{status === 'OUT_OF_SERVICE' ? 'OUT OF SERVICE' : status}</Badge>;
}

export function SourceBadges({ kinds }: { kinds: SourceKind[] }) {
  return (
    <span class="badges">
      {kinds.includes('zookeeper') && (
        <Badge tone="zk" title="registered in ZooKeeper (Dubbo)">
          ZooKeeper
        </Badge>
      )}
      {kinds.includes('eureka') && (
        <Badge tone="eureka" title="registered in Eureka (Spring Cloud)">
          Eureka
        </Badge>
      )}
    </span>
  );
}

const SYNC_TONE: Record<SyncState, Tone> = { 'in-sync': 'ok', pending: 'info', nacked: 'bad', disconnected: 'muted' };

export function SyncBadge({ sync }: { sync: SyncState }) {
  return <Badge tone={SYNC_TONE[sync] ?? 'muted'}>{sync}</Badge>;
}

export function Empty(props: { title: string; children?: ComponentChildren; testid?: string }) {
  return (
    <div class="empty" data-testid={props.testid ?? 'empty-state'}>
      <div class="empty-mark" aria-hidden="true">
        ◌
      </div>
      <div class="empty-title">{props.title}</div>
      {props.children && <div class="empty-body">{props.children}</div>}
    </div>
  );
}

export function ErrorNote({ error, stale }: { error: unknown; stale?: boolean }) {
  if (!error) return null;
  const network = error instanceof ApiError && error.network;
  const forbidden = error instanceof ApiError && error.status === 403;
  return (
    <div class={`note ${network ? 'note-warn' : 'note-bad'}`} role="alert" data-testid={forbidden ? 'forbidden' : 'error-note'}>
      {network && stale ? 'The server is unreachable: showing the last data received.' : describeError(error)}
      {error instanceof ApiError && error.issues.length > 0 && (
        <ul class="issues">
          {error.issues.map((i) => (
            <li key={i.path + i.message}>
              <code>{i.path || '(payload)'}</code> {i.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Loading({ label = 'Loading…' }: { label?: string }) {
  return (
    <div class="loading" aria-busy="true">
      <span class="spinner" aria-hidden="true" /> {label}
    </div>
  );
}

export function Section(props: {
  title: ComponentChildren;
  actions?: ComponentChildren;
  children: ComponentChildren;
  class?: string;
  testid?: string;
}) {
  return (
    <section class={`panel ${props.class ?? ''}`} data-testid={props.testid}>
      <header class="panel-head">
        <h2>{props.title}</h2>
        {props.actions && <div class="panel-actions">{props.actions}</div>}
      </header>
      <div class="panel-body">{props.children}</div>
    </section>
  );
}

export function Stat(props: {
  label: string;
  value: ComponentChildren;
  sub?: ComponentChildren;
  tone?: Tone | 'plain';
  testid?: string;
}) {
  return (
    <div class={`stat stat-${props.tone ?? 'plain'}`} data-testid={props.testid}>
      <div class="stat-value">{props.value}</div>
      <div class="stat-label">{props.label}</div>
      {props.sub && <div class="stat-sub">{props.sub}</div>}
    </div>
  );
}

export function Time({ value }: { value: string | number | Date | undefined | null }) {
  if (value === undefined || value === null) return <span class="muted">–</span>;
  return (
    <time title={fmtTime(value)} dateTime={new Date(value).toISOString()}>
      {fmtAgo(value)}
    </time>
  );
}

/** Prev / next with the position; `total` when the server counts, `hasMore` when it does not. */
export function Pager(props: {
  page: number;
  pageSize: number;
  total?: number;
  hasMore?: boolean;
  shown: number;
  onPage: (page: number) => void;
  testid?: string;
}) {
  const { page, pageSize, total, shown } = props;
  const first = shown === 0 ? 0 : (page - 1) * pageSize + 1;
  const last = (page - 1) * pageSize + shown;
  const pages = total !== undefined ? Math.max(1, Math.ceil(total / pageSize)) : undefined;
  const hasNext = pages !== undefined ? page < pages : !!props.hasMore;
  if (page === 1 && !hasNext)
    return total !== undefined && total > 0 ? <div class="pager muted">{total.toLocaleString('en-US')} in all</div> : null;
  return (
    <div class="pager" data-testid={props.testid ?? 'pager'}>
      <button type="button" class="btn btn-small" disabled={page <= 1} onClick={() => props.onPage(page - 1)}>
        ‹ Prev
      </button>
      <span class="muted">
        {first.toLocaleString('en-US')}–{last.toLocaleString('en-US')}
        {total !== undefined ? ` of ${total.toLocaleString('en-US')}` : ''}
        {pages !== undefined ? ` · page ${page} of ${pages}` : ` · page ${page}`}
      </span>
      <button type="button" class="btn btn-small" disabled={!hasNext} onClick={() => props.onPage(page + 1)}>
        Next ›
      </button>
    </div>
  );
}

/** Client-side paging for long lists held in memory: at most `pageSize` rows rendered. */
export function useClientPage<T>(items: readonly T[], pageSize = 200, resetKey?: unknown) {
  const [page, setPage] = useState(1);
  useEffect(() => setPage(1), [resetKey]);
  const pages = Math.max(1, Math.ceil(items.length / pageSize));
  const current = Math.min(page, pages);
  const pageItems = useMemo(() => items.slice((current - 1) * pageSize, current * pageSize), [items, current, pageSize]);
  return { page: current, setPage, pageItems, pageSize, total: items.length };
}

/** The pager of a `useClientPage` list. */
export function ClientPager({ paging, testid }: { paging: ReturnType<typeof useClientPage>; testid?: string }) {
  return (
    <Pager
      page={paging.page}
      pageSize={paging.pageSize}
      total={paging.total}
      shown={paging.pageItems.length}
      onPage={paging.setPage}
      {...(testid ? { testid } : {})}
    />
  );
}

export function Filter(props: {
  value: string;
  onInput: (value: string) => void;
  placeholder?: string;
  testid?: string;
  autoFocus?: boolean;
}) {
  return (
    <input
      class="input filter"
      type="search"
      value={props.value}
      placeholder={props.placeholder ?? 'Filter…'}
      data-testid={props.testid}
      autoFocus={props.autoFocus}
      onInput={(e) => props.onInput(e.currentTarget.value)}
    />
  );
}

export function Segmented<T extends string>(props: {
  value: T;
  options: readonly { value: T; label: string }[];
  onChange: (value: T) => void;
  testid?: string;
}) {
  return (
    <div class="segmented" role="group" data-testid={props.testid}>
      {props.options.map((o) => (
        <button
          type="button"
          key={o.value}
          class={o.value === props.value ? 'active' : ''}
          aria-pressed={o.value === props.value}
          data-testid={props.testid ? `${props.testid}-${o.value}` : undefined}
          onClick={() => props.onChange(o.value)}
        >
          {o.label}
        </button>
      ))}
    </div>
  );
}

export function Json({ value }: { value: unknown }) {
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>;
}

export function Th(props: JSX.HTMLAttributes<HTMLTableCellElement> & { num?: boolean }) {
  const { num, ...rest } = props;
  return <th {...rest} class={num ? 'num' : undefined} />;
}
