import { useEffect, useRef } from 'preact/hooks';
import { enc, withQuery } from '../api';
import { useApi } from '../hooks';
import { useLive } from '../live';
import { Store, useStore } from '../store';
import type { ApplicationAgents, RevisionStatus } from '../types';
import { Badge, ErrorNote } from './ui';

/** The last revision this browser wrote: its push progress stays visible across the rules pages. */
export interface PushTarget {
  application: string;
  revision: number;
  what: string;
  at: number;
}

export const lastPush = new Store<PushTarget | undefined>(undefined);

export function notePush(application: string, revision: number, what: string): void {
  lastPush.set({ application, revision, what, at: Date.now() });
}

/** Shows the last push when it concerns `application` (or any, when not given). */
export function LastPush({ application }: { application?: string | undefined }) {
  const push = useStore(lastPush);
  if (!push || (application !== undefined && push.application !== application)) return null;
  return <PushProgress target={push} onDismiss={() => lastPush.set(undefined)} />;
}

const POLL_MS = 2000;
const POLL_FOR_MS = 120_000;

/**
 * "acknowledged N of M": how many connected instances enforce the revision (or a later one), from
 * `/revisions/:rev/acks`, re-read on every live `agents` event of the application and polled
 * while instances are still pending; the lagging instances are named, NACK reasons included.
 */
export function PushProgress({ target, onDismiss }: { target: PushTarget; onDismiss?: () => void }) {
  const { application, revision } = target;
  const acks = useApi<RevisionStatus>(`/api/applications/${enc(application)}/revisions/${revision}/acks`);
  const agents = useApi<ApplicationAgents>(withQuery(`/api/applications/${enc(application)}/agents`, {}));
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  useLive('agents', (e) => {
    if (e.application !== application) return;
    clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      acks.reload();
      agents.reload();
    }, 300);
  });
  useEffect(() => () => clearTimeout(timer.current), []);

  const status = acks.data;
  const waiting = status ? status.pending > 0 : true;
  useEffect(() => {
    if (!waiting || Date.now() - target.at > POLL_FOR_MS) return;
    const t = setTimeout(() => acks.reload(), POLL_MS);
    return () => clearTimeout(t);
  }, [waiting, status, target.at]);

  const lagging = (status?.instances ?? []).filter((i) => i.state !== 'in-sync');
  const done = status !== undefined && status.connected > 0 && status.acknowledged === status.connected;
  const offline = agents.data?.summary.disconnected ?? 0;
  const pct = status && status.connected > 0 ? (100 * status.acknowledged) / status.connected : 0;

  return (
    <div class={`push ${done ? 'push-done' : status && status.nacked > 0 ? 'push-bad' : ''}`} data-testid="push-panel">
      <div class="push-head">
        <strong>
          {target.what}: {application} revision {revision}
        </strong>
        <span
          class="push-count"
          data-testid="push-progress"
          data-acknowledged={status?.acknowledged}
          data-connected={status?.connected}
        >
          {status ? `acknowledged ${status.acknowledged} of ${status.connected}` : 'waiting for acknowledgements…'}
        </span>
        {status && status.nacked > 0 && <Badge tone="bad">{status.nacked} refused</Badge>}
        {status && status.pending > 0 && <Badge tone="info">{status.pending} pending</Badge>}
        {done && <Badge tone="ok">every online instance enforces it</Badge>}
        <span class="spacer" />
        <button type="button" class="btn btn-small" onClick={() => acks.reload()}>
          Refresh
        </button>
        {onDismiss && (
          <button type="button" class="btn btn-small" onClick={onDismiss} aria-label="dismiss">
            ✕
          </button>
        )}
      </div>
      {status && status.connected > 0 && (
        <div class="progress" role="progressbar" aria-valuenow={Math.round(pct)} aria-valuemin={0} aria-valuemax={100}>
          <span style={{ width: `${pct}%` }} />
        </div>
      )}
      <ErrorNote error={acks.error} stale={status !== undefined} />
      {status && status.connected === 0 && (
        <p class="muted small">No agent of {application} is online: instances get this revision when they connect.</p>
      )}
      {lagging.length > 0 && (
        <div class="push-lagging" data-testid="push-lagging">
          <span class="muted small">Lagging:</span>
          <ul>
            {lagging.slice(0, 50).map((i) => (
              <li key={i.instanceId} data-testid="push-lagging-instance">
                <code>{i.instanceId}</code>{' '}
                {i.state === 'nacked' ? <Badge tone="bad">NACK</Badge> : <Badge tone="info">pending</Badge>}{' '}
                <span class="muted small">enforces {i.appliedRevision}</span>
                {i.nack && <span class="text-bad small"> — {i.nack}</span>}
              </li>
            ))}
          </ul>
          {lagging.length > 50 && <p class="muted small">and {lagging.length - 50} more</p>}
        </div>
      )}
      {offline > 0 && <p class="muted small">{offline} offline instance(s) will get it when they reconnect.</p>}
    </div>
  );
}
