import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, HTTP, INBOUND, ManualClock } from '../../agent/src/engine/index.js';
import { Faults, Logger } from '../../agent/src/runtime/log.js';
import { Peers } from '../../agent/src/runtime/names.js';
import { RuleSet } from '../../agent/src/runtime/rule-set.js';
import { CAPABILITIES, Session } from '../../agent/src/runtime/session.js';
import { StateStore } from '../../agent/src/runtime/state-store.js';
import { HelloSchema } from '../../src/agent-protocol/messages.js';
import { FakeSteward, forced, inbound, path, qps, until } from './agent-runtime-support.js';

// The session against a socket.io server playing Steward's side, with the real engine and state file.

const RULE_A = forced('a', inbound(path('/a')), { status: 418 });
const RULE_B = forced('b', inbound(path('/b')), { status: 419 });

describe('agent session', () => {
  const server = new FakeSteward();
  const log = new Logger('silent');
  const engine = new Engine({ application: 'orders', clock: new ManualClock(0) });
  const peers = new Peers();
  let dir: string;
  let store: StateStore;
  let rules: RuleSet;
  let session: Session;
  const statsAcks: unknown[] = [];
  const statusOf = (name: string) => {
    const verdict = engine.enter(INBOUND, '', HTTP, 'GET', name);
    return verdict.kind === 'answer' ? verdict.status : 'call';
  };

  beforeAll(async () => {
    server.heartbeatMs = 1_000;
    await server.start();
    dir = mkdtempSync(join(tmpdir(), 'steward-agent-session-'));
    // A previous run left revision 3 (rule a) on disk.
    writeFileSync(
      join(dir, 'orders.rules.json'),
      JSON.stringify({ application: 'orders', revision: 3, rules: [RULE_A], savedAt: 1 }),
    );
    store = new StateStore(dir, 'orders', log);
    rules = new RuleSet(engine, store, log);
    rules.restore();
    session = new Session({
      serverUrl: server.url,
      token: 'stw_test',
      application: 'orders',
      instanceId: 'orders-1',
      run: 'run-session-test',
      host: '10.0.0.7',
      rules,
      peers,
      ports: () => [8080],
      log,
      faults: new Faults(log),
      onStatsAck: (ack) => statsAcks.push(ack),
    });
    session.start();
  });

  afterAll(async () => {
    session.stop();
    await server.stop();
    await store.flushed();
    rmSync(dir, { recursive: true, force: true });
  });

  it('says hello with the revision held on disk, and its token in the handshake', async () => {
    const hello = await server.next('hello');
    expect(hello.valid).toBe(true);
    expect(HelloSchema.parse(hello.frame)).toEqual({
      type: 'hello',
      protocol: 1,
      application: 'orders',
      instanceId: 'orders-1',
      run: 'run-session-test',
      host: '10.0.0.7',
      ports: [8080],
      agent: { language: 'node', version: '0.1.0' },
      capabilities: CAPABILITIES,
      heldRevision: 3,
    });
    expect(server.tokens).toEqual(['stw_test']);
    await until(() => session.connected || undefined, 'connected');
    expect(statusOf('/a')).toBe(418);
  });

  it('applies a snapshot, acks it and saves it', async () => {
    server.push({ type: 'snapshot', application: 'orders', revision: 5, rules: [RULE_B] });
    const ack = await server.next('ack', 0);
    expect(ack.frame).toEqual({ type: 'ack', revision: 5 });
    expect(ack.valid).toBe(true);
    expect(statusOf('/a')).toBe('call');
    expect(statusOf('/b')).toBe(419);
    await store.flushed();
    expect(JSON.parse(readFileSync(join(dir, 'orders.rules.json'), 'utf8'))).toMatchObject({ revision: 5, rules: [{ id: 'b' }] });
  });

  it('refuses a snapshot with a bad rule whole, and keeps enforcing the previous set', async () => {
    const bad = { ...qps('q', inbound(path('/q')), 1), limit: { mode: 'qps', permitsPerSec: -1 } };
    server.push({ type: 'snapshot', application: 'orders', revision: 6, rules: [RULE_A, bad] });
    const nack = await server.next('nack');
    expect(nack.valid).toBe(true);
    expect(nack.frame).toEqual({
      type: 'nack',
      revision: 6,
      reason: expect.stringMatching(/^rule q: limit.permitsPerSec: /) as string,
      keptRevision: 5,
    });
    expect(statusOf('/a')).toBe('call');
    expect(statusOf('/b')).toBe(419);
    server.push({ type: 'snapshot', application: 'stock', revision: 6, rules: [] });
    expect((await server.next('nack', 1)).frame).toMatchObject({
      reason: expect.stringMatching(/for application "stock"/) as string,
    });
  });

  it('asks for a snapshot when a delta does not start at its revision, else applies it', async () => {
    server.push({ type: 'delta', application: 'orders', fromRevision: 4, revision: 6, upserts: [RULE_A], deletes: [] });
    expect((await server.next('resync')).frame).toEqual({ type: 'resync', heldRevision: 5 });
    expect(statusOf('/a')).toBe('call');

    server.push({ type: 'delta', application: 'orders', fromRevision: 5, revision: 6, upserts: [RULE_A], deletes: ['b'] });
    expect((await server.next('ack', 0, (f) => f.revision === 6)).valid).toBe(true);
    expect(statusOf('/a')).toBe(418);
    expect(statusOf('/b')).toBe('call');
  });

  it('takes the peers map', async () => {
    server.push({ type: 'peers', application: 'orders', addresses: [{ address: '10.0.0.9:8080', application: 'stock' }] });
    // An unknown address is its own name (not empty): wait for the application's.
    await until(() => (peers.calleeOf('10.0.0.9', 8080) === 'stock' ? true : undefined), 'the peers map');
    expect(peers.calleeOf('10.0.0.9', 8080)).toBe('stock');
  });

  it('counts and ignores invalid frames', async () => {
    const before = session.invalidFrames;
    server.push({ type: 'snapshot', application: 'orders', revision: -1, rules: [] });
    server.push({ type: 'snapshot', application: 'orders', revision: 9, rules: [], extra: true });
    server.push({ type: 'welcome', protocol: 1, heartbeatMs: 1_000, serverTime: 0 }, 'snapshot');
    server.push({ type: 'surprise' });
    server.push({ type: 'peers', application: 'stock', addresses: [] });
    server.push({ type: 'stats-ack', kind: 'heartbeat', seq: 1, accepted: true });
    server.push({ type: 'stats-ack', kind: 'stats', seq: 0, accepted: true });
    await until(() => (session.invalidFrames === before + 7 ? true : undefined), 'seven invalid frames');
    expect(statsAcks).toEqual([]);
    expect(rules.revision).toBe(6);
    expect(peers.size).toBe(1);
  });

  it('hands acknowledgements of statistics frames to the reporter', async () => {
    server.push({ type: 'stats-ack', kind: 'records', seq: 42, accepted: false });
    await until(() => statsAcks[0], 'the stats-ack');
    expect(statsAcks).toEqual([{ type: 'stats-ack', kind: 'records', seq: 42, accepted: false }]);
  });

  it('sends heartbeats with the applied revision', async () => {
    const heartbeat = await server.next('heartbeat', 0, (f) => f.appliedRevision === 6);
    expect(heartbeat.valid).toBe(true);
    expect(heartbeat.frame.sentAt).toBeGreaterThan(Date.now() - 5_000);
  });

  it('reports breaker transitions and listening ports', async () => {
    session.breakerState('b1', 'OPEN', 1_790_000_000_000);
    session.listening([8080, 8443]);
    expect((await server.next('breaker-state')).frame).toEqual({
      type: 'breaker-state',
      ruleId: 'b1',
      state: 'OPEN',
      at: 1_790_000_000_000,
    });
    expect((await server.next('listening')).frame).toEqual({ type: 'listening', ports: [8080, 8443] });
  });

  it('reconnects after the server ends the session or the connection drops, holding its revision', async () => {
    const hellos = server.frames('hello').length;
    server.received[0]!.socket.disconnect(true);
    const again = await server.next('hello', hellos);
    expect(again.frame).toMatchObject({ heldRevision: 6 });
    await until(() => session.connected || undefined, 'connected again');

    again.socket.conn.close();
    expect((await server.next('hello', hellos + 1)).frame).toMatchObject({ heldRevision: 6 });
    expect(session.reconnects).toBe(2);
    expect(server.received.every((r) => r.valid)).toBe(true);
  });
});
