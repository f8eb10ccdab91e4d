import cytoscape, { type Core, type ElementDefinition } from 'cytoscape';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, describeError, enc, withQuery } from '../api';
import { Badge, Empty, ErrorNote, Loading, Segmented } from '../components/ui';
import { fmtInt, fmtMs, fmtNum, fmtPct } from '../format';
import { useApi, useNow } from '../hooks';
import { href, setQuery, useRoute } from '../router';
import { exposeCy } from '../testhooks';
import type { AgentApplication, ApplicationAgents, GraphResult, Page, RuleListItem } from '../types';

type Range = '5m' | '15m' | '1h' | '6h';
const RANGE_MS: Record<Range, number> = { '5m': 5 * 60_000, '15m': 15 * 60_000, '1h': 3_600_000, '6h': 6 * 3_600_000 };

const GREEN = '#16a34a';
const AMBER = '#d97706';
const RED = '#dc2626';

export const healthOf = (errorRate: number): 'ok' | 'warn' | 'bad' =>
  errorRate >= 0.05 ? 'bad' : errorRate >= 0.01 ? 'warn' : 'ok';
const COLOR = { ok: GREEN, warn: AMBER, bad: RED } as const;

/** An open (or half-open) breaker reported by a connected agent, placed on its edge or node. */
interface OpenBreaker {
  application: string;
  ruleId: string;
  state: 'OPEN' | 'HALF_OPEN';
  instances: number;
  /** The callee of an outbound rule: the breaker sits on the edge application → callee. */
  callee?: string;
}

const MAX_AGENT_FETCHES = 200;

/**
 * Breakers: the agents report each breaker rule's state (`breakers` in /api/applications/:app/agents).
 * Only applications that have breaker rules and connected agents are asked, four at a time.
 */
async function loadBreakers(signal: AbortSignal): Promise<OpenBreaker[]> {
  const [rules, agents] = await Promise.all([
    api<Page<RuleListItem>>('/api/rules?kind=breaker&enabled=true&pageSize=1000', { signal }),
    api<{ items: AgentApplication[] }>('/api/agents', { signal }),
  ]);
  const byApp = new Map<string, Map<string, RuleListItem>>();
  for (const r of rules.items) {
    let m = byApp.get(r.application);
    if (!m) byApp.set(r.application, (m = new Map<string, RuleListItem>()));
    m.set(r.id, r);
  }
  const apps = agents.items.filter((a) => a.connected > 0 && byApp.has(a.application)).map((a) => a.application);
  const out: OpenBreaker[] = [];
  const queue = apps.slice(0, MAX_AGENT_FETCHES);
  const worker = async () => {
    for (let app = queue.shift(); app !== undefined; app = queue.shift()) {
      const view = await api<ApplicationAgents>(`/api/applications/${enc(app)}/agents`, { signal }).catch(() => undefined);
      if (!view) continue;
      const open = new Map<string, OpenBreaker>();
      for (const agent of view.agents) {
        if (!agent.connected) continue;
        for (const [ruleId, b] of Object.entries(agent.breakers)) {
          if (b.state === 'CLOSED') continue;
          const seen = open.get(ruleId);
          if (seen) {
            seen.instances++;
            if (b.state === 'OPEN') seen.state = 'OPEN';
            continue;
          }
          const rule = byApp.get(app)?.get(ruleId);
          open.set(ruleId, {
            application: app,
            ruleId,
            state: b.state,
            instances: 1,
            ...(rule?.target.direction === 'outbound' && rule.target.callee ? { callee: rule.target.callee } : {}),
          });
        }
      }
      out.push(...open.values());
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return out;
}

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

function buildElements(graph: GraphResult, breakers: OpenBreaker[]): ElementDefinition[] {
  const maxQps = Math.max(1, ...graph.edges.map((e) => e.qps));
  const scale = Math.log10(1 + maxQps);
  const nodeBreakers = new Map<string, OpenBreaker[]>();
  const edgeBreakers = new Map<string, OpenBreaker[]>();
  for (const b of breakers) {
    const map = b.callee ? edgeBreakers : nodeBreakers;
    const key = b.callee ? `${b.application}->${b.callee}` : b.application;
    map.set(key, [...(map.get(key) ?? []), b]);
  }
  const ids = new Set(graph.nodes.map((n) => n.application));
  const elements: ElementDefinition[] = [];
  const manyEdges = graph.edges.length > 150;
  for (const n of graph.nodes) {
    const open = nodeBreakers.get(n.application) ?? [];
    elements.push({
      group: 'nodes',
      data: {
        id: n.application,
        label: open.length ? `${n.application}\n⚠ breaker open` : n.application,
        application: n.application,
        reporting: n.reporting,
        calls: n.inbound.calls,
        qps: n.inbound.qps,
        errors: n.inbound.errors,
        errorRate: n.inbound.errorRate,
        p99: n.inbound.p99,
        health: healthOf(n.inbound.errorRate),
        unknownCalleeCalls: n.unknownCalleeCalls,
        breakerOpen: open.length > 0,
        breakers: open.map((b) => `${b.ruleId} ${b.state}`).join(', '),
      },
    });
  }
  for (const e of graph.edges) {
    const key = `${e.caller}->${e.callee}`;
    const open = edgeBreakers.get(key) ?? [];
    // an application only named in a breaker rule still gets its node
    for (const app of [e.caller, e.callee]) {
      if (!ids.has(app)) {
        ids.add(app);
        elements.push({
          group: 'nodes',
          data: {
            id: app,
            label: app,
            application: app,
            reporting: false,
            calls: 0,
            qps: 0,
            errors: 0,
            errorRate: 0,
            p99: 0,
            health: 'ok',
            breakerOpen: false,
            breakers: '',
          },
        });
      }
    }
    const health = healthOf(e.errorRate);
    const label = open.length ? `⚠ breaker open · ${fmtNum(e.qps)}/s` : manyEdges ? '' : `${fmtNum(e.qps)}/s`;
    elements.push({
      group: 'edges',
      data: {
        id: key,
        source: e.caller,
        target: e.callee,
        caller: e.caller,
        callee: e.callee,
        calls: e.calls,
        qps: e.qps,
        errors: e.errors,
        errorRate: e.errorRate,
        p99: e.p99,
        limited: e.limited,
        broken: e.broken,
        view: e.source,
        health,
        color: COLOR[health],
        width: 1.5 + (7 * Math.log10(1 + e.qps)) / scale,
        label,
        breakerOpen: open.length > 0,
        breakers: open.map((b) => `${b.ruleId} ${b.state} (${b.instances} instance${b.instances === 1 ? '' : 's'})`).join(', '),
      },
    });
  }
  // breakers on callees that made no call in the range: still shown, on the caller node
  for (const [key, open] of edgeBreakers) {
    if (elements.some((el) => el.data.id === key)) continue;
    const [caller] = key.split('->');
    const node = elements.find((el) => el.data.id === caller);
    if (node) {
      node.data['breakerOpen'] = true;
      node.data['label'] = `${caller}\n⚠ breaker open`;
      node.data['breakers'] = [node.data['breakers'], ...open.map((b) => `${b.ruleId} ${b.state} → ${b.callee}`)]
        .filter(Boolean)
        .join(', ');
    }
  }
  return elements;
}

function style(): cytoscape.StylesheetJson {
  const text = cssVar('--text', '#0f172a');
  const surface = cssVar('--surface', '#ffffff');
  const muted = cssVar('--muted', '#64748b');
  return [
    {
      selector: 'node',
      style: {
        label: 'data(label)',
        'text-wrap': 'wrap',
        'text-valign': 'bottom',
        'text-margin-y': 6,
        'font-size': 11,
        color: text,
        'text-outline-color': surface,
        'text-outline-width': 2,
        width: 26,
        height: 26,
        'background-color': '#3b82f6',
        'border-width': 2,
        'border-color': surface,
      },
    },
    { selector: 'node[health = "warn"]', style: { 'background-color': AMBER } },
    { selector: 'node[health = "bad"]', style: { 'background-color': RED } },
    { selector: 'node[health = "ok"][calls > 0]', style: { 'background-color': GREEN } },
    { selector: 'node[?reporting][calls = 0]', style: { 'background-color': '#3b82f6' } },
    {
      selector: 'node[!reporting]',
      style: { 'background-color': muted, 'border-style': 'dashed', 'border-color': muted, opacity: 0.85 },
    },
    { selector: 'node[?breakerOpen]', style: { 'border-width': 5, 'border-color': RED, 'border-style': 'solid', color: RED } },
    {
      selector: 'edge',
      style: {
        width: 'data(width)',
        'line-color': 'data(color)',
        'target-arrow-color': 'data(color)',
        'target-arrow-shape': 'triangle',
        'curve-style': 'bezier',
        'arrow-scale': 0.9,
        label: 'data(label)',
        'font-size': 9,
        color: muted,
        'text-rotation': 'autorotate',
        'text-background-color': surface,
        'text-background-opacity': 0.85,
        'text-background-padding': '1px',
        opacity: 0.9,
      },
    },
    {
      selector: 'edge[?breakerOpen]',
      style: { 'line-style': 'dashed', 'line-color': RED, 'target-arrow-color': RED, color: RED, 'font-weight': 'bold' },
    },
    { selector: ':selected', style: { 'overlay-color': '#2563eb', 'overlay-opacity': 0.15, 'overlay-padding': 6 } },
    { selector: '.faded', style: { opacity: 0.15 } },
  ] as unknown as cytoscape.StylesheetJson;
}

function layoutFor(nodes: number, randomize: boolean): cytoscape.LayoutOptions {
  if (nodes > 150)
    return { name: 'concentric', animate: false, minNodeSpacing: 12, concentric: (n) => n.degree(false), levelWidth: () => 2 };
  return {
    name: 'cose',
    animate: false,
    randomize,
    nodeRepulsion: () => 9000,
    idealEdgeLength: () => 110,
    padding: 30,
    numIter: 1000,
  };
}

/** Fits the graph, but a handful of nodes is not blown up to fill the screen. */
function fit(cy: Core): void {
  cy.fit(undefined, 40);
  if (cy.zoom() > 1.25) {
    cy.zoom(1.25);
    cy.center();
  }
}

type Selection = { kind: 'node' | 'edge'; data: Record<string, unknown> } | undefined;

export function GraphScreen() {
  const { query } = useRoute();
  const range = (query.get('range') as Range | null) ?? '15m';
  const now = useNow(60_000);
  const to = Math.ceil(now / 60_000) * 60_000;
  const from = to - RANGE_MS[range];
  const graph = useApi<GraphResult>(withQuery('/api/stats/graph', { from, to }), { refreshMs: 15_000 });
  const [breakers, setBreakers] = useState<OpenBreaker[]>([]);
  const [breakerError, setBreakerError] = useState<unknown>(undefined);
  const box = useRef<HTMLDivElement>(null);
  const cyRef = useRef<Core | undefined>(undefined);
  const [selected, setSelected] = useState<Selection>(undefined);

  // breaker states, every 10 s
  useEffect(() => {
    const controller = new AbortController();
    const load = () =>
      loadBreakers(controller.signal).then(
        (b) => {
          setBreakers(b);
          setBreakerError(undefined);
        },
        (err: unknown) => {
          if (!controller.signal.aborted) setBreakerError(err);
        },
      );
    void load();
    const timer = setInterval(() => {
      if (!document.hidden) void load();
    }, 10_000);
    return () => {
      controller.abort();
      clearInterval(timer);
    };
  }, []);

  const elements = useMemo(() => (graph.data ? buildElements(graph.data, breakers) : undefined), [graph.data, breakers]);

  // one Cytoscape instance for the life of the screen
  useEffect(() => {
    if (!box.current) return;
    const cy = cytoscape({
      container: box.current,
      style: style(),
      minZoom: 0.1,
      maxZoom: 3,
      boxSelectionEnabled: false,
    });
    cyRef.current = cy;
    exposeCy(cy);
    cy.on('tap', 'node', (e) => {
      const node = e.target as cytoscape.NodeSingular;
      setSelected({ kind: 'node', data: { ...(node.data() as Record<string, unknown>) } });
      cy.elements().addClass('faded');
      node.closedNeighborhood().removeClass('faded');
    });
    cy.on('tap', 'edge', (e) => {
      const edge = e.target as cytoscape.EdgeSingular;
      setSelected({ kind: 'edge', data: { ...(edge.data() as Record<string, unknown>) } });
      cy.elements().addClass('faded');
      edge.removeClass('faded');
      edge.connectedNodes().removeClass('faded');
    });
    cy.on('tap', (e) => {
      if (e.target === cy) {
        setSelected(undefined);
        cy.elements().removeClass('faded');
      }
    });
    return () => {
      exposeCy(undefined);
      cy.destroy();
      cyRef.current = undefined;
    };
  }, []);

  // apply data: update in place; re-layout only when nodes come or go
  useEffect(() => {
    const cy = cyRef.current;
    if (!cy || !elements) return;
    const wanted = new Set(elements.map((e) => e.data.id!));
    let structural = false;
    cy.batch(() => {
      cy.elements().forEach((el) => {
        if (!wanted.has(el.id())) {
          el.remove();
          structural = true;
        }
      });
      for (const def of elements) {
        const existing = cy.getElementById(def.data.id!);
        if (existing.nonempty()) existing.data(def.data);
        else {
          cy.add(def);
          structural = true;
        }
      }
    });
    if (structural && cy.nodes().length > 0) {
      const first = cy.nodes().length === elements.filter((e) => e.group === 'nodes').length && cy.scratch('laidOut') !== true;
      cy.layout(layoutFor(cy.nodes().length, first)).run();
      cy.scratch('laidOut', true);
      fit(cy);
    }
    box.current?.setAttribute('data-nodes', String(cy.nodes().length));
    box.current?.setAttribute('data-edges', String(cy.edges().length));
    box.current?.setAttribute('data-ready', 'true');
  }, [elements]);

  const empty = graph.data && graph.data.nodes.length === 0 && graph.data.edges.length === 0;
  const openCount = breakers.length;

  return (
    <div class="screen screen-graph" data-testid="screen-graph">
      <div class="screen-head">
        <h1>Dependency graph</h1>
        <Segmented
          value={range}
          testid="graph-range"
          options={[
            { value: '5m', label: '5 min' },
            { value: '15m', label: '15 min' },
            { value: '1h', label: '1 h' },
            { value: '6h', label: '6 h' },
          ]}
          onChange={(r) => setQuery({ range: r === '15m' ? undefined : r })}
        />
        {graph.data && (
          <span class="muted small">
            {graph.data.nodes.length} applications · {graph.data.edges.length} edges · {graph.data.resolution} windows
          </span>
        )}
        {openCount > 0 && (
          <Badge tone="bad" testid="graph-breakers-open">
            {openCount} breaker{openCount === 1 ? '' : 's'} open
          </Badge>
        )}
        <div class="spacer" />
        <button type="button" class="btn btn-small" onClick={() => cyRef.current && fit(cyRef.current)}>
          Fit
        </button>
        <button
          type="button"
          class="btn btn-small"
          onClick={() => {
            const cy = cyRef.current;
            if (cy) {
              cy.layout(layoutFor(cy.nodes().length, true)).run();
              fit(cy);
            }
          }}
        >
          Re-layout
        </button>
      </div>
      <ErrorNote error={graph.error} stale={graph.data !== undefined} />
      {breakerError !== undefined && (
        <div class="note note-warn small">Breaker states could not be read: {describeError(breakerError)}</div>
      )}
      <div class="graph-wrap">
        <div class="graph-canvas" ref={box} data-testid="dependency-graph" data-ready="false" />
        {!graph.data && graph.loading && (
          <div class="graph-overlay">
            <Loading />
          </div>
        )}
        {empty && (
          <div class="graph-overlay">
            <Empty title="No calls in this range" testid="graph-empty">
              Edges appear when agents report calls between applications. Try a longer range.
            </Empty>
          </div>
        )}
        <div class="graph-legend">
          <div>
            <span class="legend-line" style={{ background: GREEN }} /> error rate &lt; 1%
          </div>
          <div>
            <span class="legend-line" style={{ background: AMBER }} /> 1–5%
          </div>
          <div>
            <span class="legend-line" style={{ background: RED }} /> ≥ 5%
          </div>
          <div>
            <span class="legend-line dashed" /> breaker open
          </div>
          <div class="muted">width: calls per second</div>
        </div>
        {selected && <Details selection={selected} onClose={() => setSelected(undefined)} />}
      </div>
    </div>
  );
}

function Details({ selection, onClose }: { selection: NonNullable<Selection>; onClose: () => void }) {
  const d = selection.data;
  const num = (k: string) => (typeof d[k] === 'number' ? d[k] : 0);
  return (
    <div class="graph-details" data-testid="graph-details">
      <button type="button" class="btn btn-small close" onClick={onClose} aria-label="close">
        ✕
      </button>
      {selection.kind === 'node' ? (
        <>
          <h3>{String(d['application'])}</h3>
          {!d['reporting'] && <p class="muted small">Runs no agent (or reported nothing): known only as a peer.</p>}
          <div class="kv">
            <span>Served</span>
            <span>{fmtNum(num('qps'))}/s</span>
            <span>Errors</span>
            <span>
              {fmtInt(num('errors'))} ({fmtPct(num('errorRate'))})
            </span>
            <span>p99</span>
            <span>{fmtMs(num('p99'))}</span>
            {num('unknownCalleeCalls') > 0 && (
              <>
                <span>Unnamed callees</span>
                <span>{fmtInt(num('unknownCalleeCalls'))} calls</span>
              </>
            )}
            {d['breakerOpen'] === true && (
              <>
                <span>Breakers</span>
                <span class="text-bad">{String(d['breakers'])}</span>
              </>
            )}
          </div>
          <div class="chips">
            <a class="btn btn-small" href={href('/traffic', { application: String(d['application']) })}>
              Traffic
            </a>
            <a class="btn btn-small" href={`/catalog/${enc(String(d['application']))}`}>
              Catalog
            </a>
            <a class="btn btn-small" href={`/agents/${enc(String(d['application']))}`}>
              Agents
            </a>
            <a class="btn btn-small" href={href('/rules', { application: String(d['application']) })}>
              Rules
            </a>
          </div>
        </>
      ) : (
        <>
          <h3>
            {String(d['caller'])} → {String(d['callee'])}
          </h3>
          <div class="kv">
            <span>Calls</span>
            <span>
              {fmtInt(num('calls'))} ({fmtNum(num('qps'))}/s)
            </span>
            <span>Errors</span>
            <span>
              {fmtInt(num('errors'))} ({fmtPct(num('errorRate'))})
            </span>
            <span>Limited / broken</span>
            <span>
              {fmtInt(num('limited'))} / {fmtInt(num('broken'))}
            </span>
            <span>p99</span>
            <span>{fmtMs(num('p99'))}</span>
            <span>Seen by</span>
            <span>{d['view'] === 'outbound' ? 'the caller’s agent' : 'the callee’s agent'}</span>
            {d['breakerOpen'] === true && (
              <>
                <span>Breakers</span>
                <span class="text-bad">{String(d['breakers'])}</span>
              </>
            )}
          </div>
          <div class="chips">
            <a class="btn btn-small" href={href('/records', { caller: String(d['caller']), callee: String(d['callee']) })}>
              Call records
            </a>
            <a class="btn btn-small" href={href('/traffic', { application: String(d['caller']), dir: 'outbound', by: 'peer' })}>
              Caller traffic
            </a>
          </div>
        </>
      )}
    </div>
  );
}
