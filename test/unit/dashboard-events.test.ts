import { describe, expect, it } from 'vitest';
import { AgentDirectory, type AgentEvent } from '../../src/agent-protocol/agent-directory.js';
import { DashboardEventBuffer } from '../../src/dashboard/dashboard-events.js';
import type { CatalogChange, CatalogInstance } from '../../src/registry-bridge/catalog.js';
import type { LiveSecond } from '../../src/stats/live-seconds.js';
import type { Summary } from '../../src/stats/rollup.js';
import { helloFrame } from '../support/hello-frame.js';

const hello = (instanceId: string, heldRevision = 0) => helloFrame(instanceId, 'orders', heldRevision);

const change = (seq: number, type: CatalogChange['type'] = 'added'): CatalogChange => ({
  seq,
  type,
  at: 1_000,
  instance: { id: `orders|http|10.0.0.${seq}:8080`, application: 'orders' } as CatalogInstance,
});

const summary = (calls: number): Summary => ({
  calls,
  successes: calls,
  errors: 0,
  limited: 0,
  broken: 0,
  degraded: 0,
  slow: 0,
  qps: calls,
  errorRate: 0,
  avgMs: 1,
  maxMs: 1,
  p50: 1,
  p90: 1,
  p99: 1,
});

const second = (application: string, t: number, revision: number, calls = 1): LiveSecond => ({
  application,
  t,
  instances: 1,
  inbound: summary(calls),
  outbound: summary(0),
  dropped: 0,
  revision,
});

describe('AgentDirectory events (the dashboard’s agents feed)', () => {
  it('tells listeners of connections, ACKs, NACKs and disconnections as they are recorded', () => {
    let now = 1_000;
    const directory = new AgentDirectory(() => now);
    const heard: AgentEvent[] = [];
    const off = directory.subscribe((event) => heard.push(event));
    directory.subscribe(() => {
      throw new Error('a listener that fails');
    });

    directory.connect(hello('a', 3), '127.0.0.1');
    now = 2_000;
    directory.acknowledged('a', 4);
    now = 3_000;
    directory.refused('a', { revision: 5, reason: 'rule x: invalid', keptRevision: 4 });
    now = 4_000;
    directory.disconnect('a');
    directory.disconnect('a'); // already gone: nothing more
    directory.acknowledged('nobody', 1);

    expect(heard).toEqual([
      { application: 'orders', instanceId: 'a', event: 'connected', revision: 3, at: 1_000 },
      { application: 'orders', instanceId: 'a', event: 'ack', revision: 4, at: 2_000 },
      { application: 'orders', instanceId: 'a', event: 'nack', revision: 5, reason: 'rule x: invalid', at: 3_000 },
      { application: 'orders', instanceId: 'a', event: 'disconnected', at: 4_000 },
    ]);
    // The failing listener changed nothing in the directory's state.
    expect(directory.get('a')).toMatchObject({ connected: false, appliedRevision: 4 });

    off();
    directory.connect(hello('b'), '127.0.0.1');
    expect(heard).toHaveLength(4);
  });
});

describe('DashboardEventBuffer', () => {
  it('is empty until something is added, and empty again after a drain', () => {
    const buffer = new DashboardEventBuffer();
    expect(buffer.empty).toBe(true);
    expect(buffer.drain()).toEqual({ rules: [], agents: [], stats: [], dropped: { agents: 0, rules: 0, stats: 0 } });
    buffer.catalog([]);
    expect(buffer.empty).toBe(true);
    buffer.catalog([change(1)]);
    expect(buffer.empty).toBe(false);
    buffer.drain();
    expect(buffer.empty).toBe(true);
  });

  it('joins catalog batches in order under the last sequence number', () => {
    const buffer = new DashboardEventBuffer();
    buffer.catalog([change(1), change(2)]);
    buffer.catalog([change(3, 'removed')]);
    const { catalog } = buffer.drain();
    expect(catalog?.seq).toBe(3);
    expect(catalog?.changes.map((c) => [c.seq, c.type])).toEqual([
      [1, 'added'],
      [2, 'added'],
      [3, 'removed'],
    ]);
    expect(catalog).not.toHaveProperty('reset');
  });

  it('replaces too many catalog changes with a reset that still carries the last sequence number', () => {
    const buffer = new DashboardEventBuffer({ catalogChanges: 3, agents: 10, rules: 10, stats: 10 });
    buffer.catalog([change(1), change(2)]);
    buffer.catalog([change(3), change(4)]);
    buffer.catalog([change(5)]);
    expect(buffer.drain().catalog).toEqual({ seq: 5, changes: [], reset: true });
    // The next flush starts afresh.
    buffer.catalog([change(6)]);
    expect(buffer.drain().catalog).toEqual({ seq: 6, changes: [change(6)] });
  });

  it('keeps every agent event in order, up to the limit, and counts the rest', () => {
    const buffer = new DashboardEventBuffer({ catalogChanges: 10, agents: 2, rules: 10, stats: 10 });
    const event = (instanceId: string): AgentEvent => ({ application: 'orders', instanceId, event: 'connected', at: 1 });
    for (const id of ['a', 'b', 'c', 'd']) buffer.agent(event(id));
    const batch = buffer.drain();
    expect(batch.agents.map((e) => e.instanceId)).toEqual(['a', 'b']);
    expect(batch.dropped).toEqual({ agents: 2, rules: 0, stats: 0 });
    expect(buffer.drain().dropped.agents).toBe(0);
  });

  it('keeps the newest revision of each rule set', () => {
    const buffer = new DashboardEventBuffer({ catalogChanges: 10, agents: 10, rules: 2, stats: 10 });
    buffer.ruleSet({ application: 'orders', revision: 3 }, 10);
    buffer.ruleSet({ application: 'orders', revision: 5 }, 20);
    buffer.ruleSet({ application: 'orders', revision: 4 }, 30); // an older commit heard late
    buffer.ruleSet({ application: 'stock', revision: 1 }, 40);
    buffer.ruleSet({ application: 'users', revision: 1 }, 50); // over the limit
    const batch = buffer.drain();
    expect(batch.rules).toEqual([
      { application: 'orders', revision: 5, at: 20 },
      { application: 'stock', revision: 1, at: 40 },
    ]);
    expect(batch.dropped.rules).toBe(1);
  });

  it('sends each application-second once, at its latest revision, after the seconds queued before it', () => {
    const buffer = new DashboardEventBuffer();
    buffer.second(second('orders', 1_000, 0, 1));
    buffer.second(second('stock', 1_000, 0, 2));
    buffer.second(second('orders', 1_000, 1, 5)); // a late frame changed it
    buffer.second(second('orders', 1_000, 0, 1)); // never goes back
    buffer.second(second('orders', 2_000, 0, 3));
    expect(buffer.drain().stats.map((s) => [s.application, s.t, s.revision, s.inbound.calls])).toEqual([
      ['stock', 1_000, 0, 2],
      ['orders', 1_000, 1, 5],
      ['orders', 2_000, 0, 3],
    ]);
  });
});
