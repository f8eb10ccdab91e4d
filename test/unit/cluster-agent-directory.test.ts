import { describe, expect, it } from 'vitest';
import { AgentDirectory, type AgentEvent, type AgentRecord } from '../../src/agent-protocol/agent-directory.js';
import { AgentStateMessage, ClusterAgentDirectory } from '../../src/agent-protocol/cluster-agent-directory.js';
import { helloFrame } from '../support/hello-frame.js';

const hello = helloFrame;

/** Another replica's own directory, and the message it would send of all its records. */
function replica(name: string, now: () => number) {
  const directory = new AgentDirectory(now);
  const message = (): AgentStateMessage =>
    AgentStateMessage.parse(JSON.parse(JSON.stringify({ v: 1, replica: name, at: now(), agents: [...directory.all()] })));
  return { directory, message };
}

function setup() {
  const clock = { now: 1_000 };
  const now = () => clock.now;
  const local = new AgentDirectory(now);
  const cluster = new ClusterAgentDirectory(local, 'r1', { ttlMs: 20_000, now });
  const events: AgentEvent[] = [];
  cluster.subscribe((e) => events.push(e));
  const addresses: [string, string, AgentRecord | undefined][] = [];
  cluster.watchRemoteAddresses((id, app, record) => addresses.push([id, app, record]));
  return { clock, local, cluster, events, addresses, r2: replica('r2', now), r3: replica('r3', now) };
}

describe('ClusterAgentDirectory', () => {
  it('counts the agents of every replica against a revision, and names the replica of each', () => {
    const { local, cluster, r2, r3 } = setup();
    local.connect(hello('a', 'orders', 4), '127.0.0.1');
    r2.directory.connect(hello('b'), '127.0.0.1');
    r2.directory.acknowledged('b', 4);
    r3.directory.connect(hello('c'), '127.0.0.1');
    r3.directory.refused('c', { revision: 4, reason: 'too big', keptRevision: 0 });
    r3.directory.connect(hello('d', 'billing'), '127.0.0.1');
    cluster.apply(r2.message());
    cluster.apply(r3.message());

    expect(cluster.revisionStatus('orders', 4)).toMatchObject({
      connected: 3,
      acknowledged: 2,
      nacked: 1,
      pending: 0,
      instances: [
        { instanceId: 'a', state: 'in-sync' },
        { instanceId: 'b', state: 'in-sync' },
        { instanceId: 'c', state: 'nacked', nack: 'too big' },
      ],
    });
    expect(cluster.list('orders').map((r) => [r.instanceId, r.replica])).toEqual([
      ['a', 'r1'],
      ['b', 'r2'],
      ['c', 'r3'],
    ]);
    expect(cluster.applications()).toEqual(['billing', 'orders']);
    expect(cluster.counts()).toEqual({ connected: 4, disconnected: 0 });
    expect(cluster.replicas().map((r) => [r.replica, r.self, r.connected])).toEqual([
      ['r1', true, 1],
      ['r2', false, 1],
      ['r3', false, 2],
    ]);
    // Its own messages (read back from the topic) change nothing.
    cluster.apply({ v: 1, replica: 'r1', at: 0, agents: [] });
    expect(cluster.replicas()).toHaveLength(3);
  });

  it('an agent that moved from a dead replica is its newest session at once; the dead one expires', () => {
    const { clock, cluster, local, r2, events, addresses } = setup();
    r2.directory.connect(hello('a', 'orders', 3), '127.0.0.1');
    cluster.apply(r2.message());
    expect(events.map((e) => [e.event, e.instanceId, e.revision])).toEqual([['connected', 'a', 3]]);
    expect(addresses.map(([id, app, r]) => [id, app, r?.ports])).toEqual([['a', 'orders', [8080]]]);

    // r2 dies without a word; the agent reconnects here.
    clock.now = 5_000;
    local.connect(hello('a', 'orders', 3), '127.0.0.1');
    expect(cluster.get('a')).toMatchObject({ replica: 'r1', connected: true, connectedAt: 5_000 });
    expect(cluster.counts()).toEqual({ connected: 1, disconnected: 0 });
    // Still connected as far as listeners know: no second "connected".
    expect(events).toHaveLength(1);

    clock.now = 5_000 + 20_001;
    cluster.expire();
    expect(cluster.replicas().map((r) => r.replica)).toEqual(['r1']);
    expect(cluster.list('orders').map((r) => r.replica)).toEqual(['r1']);
    expect(events).toHaveLength(1);
  });

  it('tells listeners of remote connections, ACKs, NACKs and departures, once each', () => {
    const { clock, cluster, r2, events, addresses } = setup();
    r2.directory.connect(hello('a'), '127.0.0.1');
    cluster.apply(r2.message());
    cluster.apply(r2.message()); // a refresh: nothing new
    r2.directory.acknowledged('a', 5);
    cluster.apply(r2.message());
    clock.now = 2_000;
    r2.directory.refused('a', { revision: 6, reason: 'bad', keptRevision: 5 });
    cluster.apply(r2.message());
    clock.now = 3_000;
    r2.directory.disconnect('a');
    cluster.apply(r2.message());
    expect(events.map((e) => [e.event, e.revision])).toEqual([
      ['connected', 0],
      ['ack', 5],
      ['nack', 6],
      ['disconnected', undefined],
    ]);
    expect(addresses.map(([id, , r]) => [id, r === undefined])).toEqual([
      ['a', false],
      ['a', true],
    ]);
    // A replica that stops repeating its records leaves the view.
    clock.now = 3_000 + 20_001;
    cluster.expire();
    expect(cluster.list('orders')).toEqual([]);
    expect(cluster.applications()).toEqual([]);
  });

  it('an agent that disconnected here but is connected on another replica stays connected', () => {
    const { clock, cluster, local, r2, events } = setup();
    local.connect(hello('a'), '127.0.0.1');
    clock.now = 2_000;
    r2.directory.connect(hello('a'), '127.0.0.1');
    cluster.apply(r2.message());
    clock.now = 3_000;
    local.disconnect('a');
    expect(cluster.get('a')).toMatchObject({ replica: 'r2', connected: true });
    expect(events.map((e) => e.event)).toEqual(['connected']);
  });

  it('refuses a malformed message by its schema', () => {
    expect(AgentStateMessage.safeParse({ v: 1, replica: 'r2', at: 0, agents: [{ instanceId: 'a' }] }).success).toBe(false);
    expect(AgentStateMessage.safeParse({ v: 2, replica: 'r2', at: 0, agents: [] }).success).toBe(false);
  });
});
