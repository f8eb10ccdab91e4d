import type { ComponentType } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { getToken, reachable } from './api';
import { Loading } from './components/ui';
import { liveStatus, startLive, stopLive } from './live';
import { handleLinkClick, navigate, useRoute } from './router';
import { AgentsScreen } from './screens/agents';
import { AuditScreen } from './screens/audit';
import { CatalogScreen } from './screens/catalog';
import { LoginScreen } from './screens/login';
import { OverviewScreen } from './screens/overview';
import { RecordsScreen } from './screens/records';
import { RulesScreen } from './screens/rules';
import { canEdit, logout, restore, session } from './session';
import { clearStatsBuffer, startStatsBuffer } from './stats-buffer';
import { useStore } from './store';
import { installTestHooks } from './testhooks';

/** Screens with heavy libraries (uPlot, Cytoscape) load on first visit. */
function lazy(load: () => Promise<ComponentType>): ComponentType {
  let loaded: ComponentType | undefined;
  let promise: Promise<void> | undefined;
  return function LazyScreen() {
    const [, setReady] = useState(0);
    const [error, setError] = useState<unknown>(undefined);
    useEffect(() => {
      if (loaded) return;
      promise ??= load().then((c) => {
        loaded = c;
      });
      promise.then(
        () => setReady((n) => n + 1),
        (err: unknown) => {
          promise = undefined;
          setError(err);
        },
      );
    }, []);
    if (loaded) {
      const Screen = loaded;
      return <Screen />;
    }
    if (error)
      return (
        <div class="note note-bad">
          This screen failed to load ({error instanceof Error ? error.message : 'unknown error'}). Reload the page.
        </div>
      );
    return <Loading label="Loading screen…" />;
  };
}

const TrafficScreen = lazy(() => import('./screens/traffic').then((m) => m.TrafficScreen));
const GraphScreen = lazy(() => import('./screens/graph').then((m) => m.GraphScreen));

const NAV = [
  { path: '/', id: 'overview', label: 'Overview', icon: '◎' },
  { path: '/catalog', id: 'catalog', label: 'Catalog', icon: '▤' },
  { path: '/agents', id: 'agents', label: 'Agents', icon: '⇅' },
  { path: '/rules', id: 'rules', label: 'Rules', icon: '§' },
  { path: '/traffic', id: 'traffic', label: 'Traffic', icon: '∿' },
  { path: '/graph', id: 'graph', label: 'Dependency graph', icon: '⋈' },
  { path: '/records', id: 'records', label: 'Call records', icon: '☰' },
  { path: '/audit', id: 'audit', label: 'Audit', icon: '✎' },
] as const;

function screenFor(path: string): ComponentType {
  const first = path.split('/')[1] ?? '';
  switch (first) {
    case '':
      return OverviewScreen;
    case 'catalog':
      return CatalogScreen;
    case 'agents':
      return AgentsScreen;
    case 'rules':
      return RulesScreen;
    case 'traffic':
      return TrafficScreen;
    case 'graph':
      return GraphScreen;
    case 'records':
      return RecordsScreen;
    case 'audit':
      return AuditScreen;
    default:
      return NotFound;
  }
}

function NotFound() {
  return (
    <div class="empty">
      <div class="empty-title">No such page</div>
      <div class="empty-body">
        <a href="/">Back to the overview</a>
      </div>
    </div>
  );
}

function ConnectionIndicator() {
  const live = useStore(liveStatus);
  const ok = useStore(reachable);
  const state = !ok ? 'disconnected' : live.state;
  const label =
    state === 'connected' ? 'Live' : state === 'connecting' ? 'Connecting…' : state === 'idle' ? 'Offline' : 'Disconnected';
  return (
    <span
      class={`conn conn-${state}`}
      data-testid="connection-indicator"
      data-state={state}
      title={live.error ? `live updates: ${live.error}` : 'live updates'}
    >
      <span class="conn-dot" aria-hidden="true" />
      {label}
    </span>
  );
}

/** Shown while the server does not answer or the live socket is down; the last data stays on screen. */
function ConnectionBanner() {
  const live = useStore(liveStatus);
  const ok = useStore(reachable);
  const [, force] = useState(0);
  // the socket's first connection gets a grace period before it counts as a failure
  const socketDown = live.state === 'disconnected' || (live.state === 'connecting' && Date.now() - live.since > 4000);
  useEffect(() => {
    if (live.state !== 'connecting') return;
    const timer = setTimeout(() => force((n) => n + 1), 4100);
    return () => clearTimeout(timer);
  }, [live.state, live.since]);
  if (ok && !socketDown) return null;
  return (
    <div class="banner" role="status" data-testid="connection-banner">
      <strong>Server unreachable, retrying…</strong>{' '}
      <span>
        {!ok ? 'The API does not answer.' : `Live updates are disconnected${live.error ? ` (${live.error})` : ''}.`} The last data
        received stays on screen.
      </span>
    </div>
  );
}

function Shell() {
  const { path } = useRoute();
  const { me } = useStore(session);
  const Screen = screenFor(path);
  const active = NAV.filter((n) => (n.path === '/' ? path === '/' : path === n.path || path.startsWith(`${n.path}/`)))[0]?.id;
  useEffect(() => {
    const label = NAV.find((n) => n.id === active)?.label;
    document.title = label ? `${label} · Steward` : 'Steward';
  }, [active]);
  return (
    <div class="shell">
      <aside class="sidebar">
        <a class="brand" href="/">
          <span class="brand-mark">S</span>
          <span>Steward</span>
        </a>
        <nav>
          {NAV.map((n) => (
            <a
              key={n.id}
              href={n.path}
              class={active === n.id ? 'active' : ''}
              aria-current={active === n.id ? 'page' : undefined}
              data-testid={`nav-${n.id}`}
            >
              <span class="nav-icon" aria-hidden="true">
                {n.icon}
              </span>
              {n.label}
            </a>
          ))}
        </nav>
        <div class="sidebar-foot">
          <a href="/docs" target="_blank" rel="noreferrer">
            API reference ↗
          </a>
        </div>
      </aside>
      <div class="main">
        <header class="topbar">
          <ConnectionIndicator />
          <div class="spacer" />
          {me && (
            <span class="who" data-testid="current-user" data-role={me.role}>
              {me.name} <span class={`badge badge-${me.role === 'viewer' ? 'muted' : 'accent'}`}>{me.role}</span>
              {!canEdit(me) && <span class="muted small"> read-only</span>}
            </span>
          )}
          <button type="button" class="btn btn-small" data-testid="logout" onClick={() => logout()}>
            Log out
          </button>
        </header>
        <ConnectionBanner />
        <main class="content">
          <Screen />
        </main>
      </div>
    </div>
  );
}

export function App() {
  const s = useStore(session);

  useEffect(() => {
    document.addEventListener('click', handleLinkClick);
    installTestHooks();
    void restore();
    startStatsBuffer();
    return () => document.removeEventListener('click', handleLinkClick);
  }, []);

  // the live socket runs while logged in
  useEffect(() => {
    const token = getToken();
    if (s.state === 'in' && token) {
      startLive(token);
      return () => {
        stopLive();
        clearStatsBuffer();
      };
    }
    return undefined;
  }, [s.state]);

  useEffect(() => {
    if (s.state === 'out' && location.pathname !== '/login') {
      const next = location.pathname + location.search;
      navigate(next === '/' ? '/login' : `/login?next=${encodeURIComponent(next)}`, { replace: true });
    }
  }, [s.state]);

  if (s.state === 'out') return <LoginScreen notice={s.notice} />;
  if (s.state === 'checking')
    return (
      <div class="center-page">
        <ConnectionBanner />
        <Loading label="Checking the stored token…" />
      </div>
    );
  return <Shell />;
}
