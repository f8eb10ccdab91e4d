import { describe, expect, it } from 'vitest';
import { AgentDirectory } from '../../src/agent-protocol/agent-directory.js';
import { PushedRuleSet } from '../../src/agent-protocol/rule-push.js';
import { helloFrame } from '../support/hello-frame.js';

const hello = helloFrame;

describe('AgentDirectory', () => {
  it('tells in-sync, pending, nacked and disconnected instances apart for a revision', () => {
    let now = 1_000;
    const directory = new AgentDirectory(() => now);
    directory.connect(hello('a', 'orders', 3), '127.0.0.1');
    directory.connect(hello('b'), '127.0.0.1');
    directory.connect(hello('c'), '127.0.0.1');
    directory.connect(hello('d'), '127.0.0.1');
    directory.acknowledged('b', 4);
    directory.refused('c', { revision: 4, reason: 'rule x: limit.burst: too big', keptRevision: 2 });
    now = 2_000;
    directory.disconnect('d');

    const status = directory.revisionStatus('orders', 4);
    expect(status).toMatchObject({ revision: 4, acknowledged: 1, nacked: 1, pending: 1, connected: 3 });
    expect(status.instances).toEqual([
      { instanceId: 'a', appliedRevision: 3, state: 'pending' },
      { instanceId: 'b', appliedRevision: 4, state: 'in-sync' },
      { instanceId: 'c', appliedRevision: 2, state: 'nacked', nack: 'rule x: limit.burst: too big' },
    ]);
    // An earlier revision is acknowledged by everyone past it.
    expect(directory.revisionStatus('orders', 3, false)).toMatchObject({ acknowledged: 2, instances: [] });
    expect(directory.list('orders').map((r) => [r.instanceId, AgentDirectory.syncState(r, 4)])).toEqual([
      ['a', 'pending'],
      ['b', 'in-sync'],
      ['c', 'nacked'],
      ['d', 'disconnected'],
    ]);
    expect(directory.get('d')?.disconnectedAt).toBe(2_000);
    // A later ACK clears the NACK's hold.
    directory.acknowledged('c', 4);
    expect(AgentDirectory.syncState(directory.get('c')!, 4)).toBe('in-sync');
  });

  it('replaces a reconnecting instance, records heartbeats, breaker states and ports', () => {
    let now = 0;
    const directory = new AgentDirectory(() => now);
    directory.connect(hello('a'), '127.0.0.1');
    directory.disconnect('a');
    now = 500;
    const again = directory.connect(hello('a', 'orders', 7), '127.0.0.2');
    expect(again).toMatchObject({ connected: true, connectedAt: 500, appliedRevision: 7, remoteAddress: '127.0.0.2' });
    expect(directory.counts()).toEqual({ connected: 1, disconnected: 0 });
    now = 900;
    directory.heartbeat('a', 7, 1_150);
    directory.breaker('a', 'brk-1', 'OPEN', 880);
    directory.listening('a', [8080, 8443]);
    expect(directory.get('a')).toMatchObject({
      lastHeartbeatAt: 900,
      clockSkewMs: 250,
      breakers: { 'brk-1': { state: 'OPEN', at: 880 } },
    });
    expect(directory.addresses('orders')).toEqual(['10.0.0.1:8080', '10.0.0.1:8443']);
    for (let i = 0; i < 2_000; i++) directory.breaker('a', `r${i}`, 'CLOSED', 0);
    expect(Object.keys(directory.get('a')!.breakers)).toHaveLength(1_000);
    expect(directory.applications()).toEqual(['orders']);
  });

  it('forgets disconnected instances after 15 minutes, keeps connected ones', () => {
    let now = 0;
    const directory = new AgentDirectory(() => now);
    directory.connect(hello('old'), 'x');
    directory.connect(hello('live'), 'x');
    directory.disconnect('old');
    now = 14 * 60_000;
    directory.sweep();
    expect(directory.get('old')).toBeDefined();
    now = 15 * 60_000 + 1;
    directory.sweep();
    expect(directory.get('old')).toBeUndefined();
    expect(directory.get('live')?.connected).toBe(true);
    expect(directory.counts()).toEqual({ connected: 1, disconnected: 0 });
  });
});

describe('PushedRuleSet', () => {
  const rule = (id: string, callee?: string, permits = 10) => ({
    id,
    kind: 'limit',
    application: 'orders',
    target: callee
      ? { direction: 'outbound', callee, resource: { type: 'application' } }
      : { direction: 'inbound', resource: { type: 'application' } },
    limit: { mode: 'qps', permitsPerSec: permits },
  });

  it('builds the snapshot once and the delta between two revisions', () => {
    const v1 = new PushedRuleSet('orders', 1, [rule('a'), rule('b', 'stock'), rule('c')]);
    const v2 = new PushedRuleSet('orders', 2, [rule('a'), rule('b', 'stock', 20), rule('d', 'pricing')]);
    expect(v1.snapshot).toEqual({
      type: 'snapshot',
      application: 'orders',
      revision: 1,
      rules: [rule('a'), rule('b', 'stock'), rule('c')],
    });
    expect(v1.deltaTo(v2)).toEqual({
      type: 'delta',
      application: 'orders',
      fromRevision: 1,
      revision: 2,
      upserts: [rule('b', 'stock', 20), rule('d', 'pricing')],
      deletes: ['c'],
    });
    expect([...v2.callees].sort()).toEqual(['pricing', 'stock']);
  });

  it('carries damaged rules along (agents NACK them) without failing', () => {
    const damaged = new PushedRuleSet('orders', 3, [null, 'text', { id: 7 }, rule('a')]);
    expect(damaged.snapshot.rules).toHaveLength(4);
    expect([...damaged.callees]).toEqual([]);
    const next = new PushedRuleSet('orders', 4, [rule('a')]);
    expect(damaged.deltaTo(next)).toMatchObject({ upserts: [], deletes: ['#0', '#1', '#2'] });
  });
});
