import { describe, expect, it } from 'vitest';
import {
  AgentMessageSchema,
  checkPushedRules,
  PROTOCOL_VERSION,
  ServerMessageSchema,
} from '../../src/agent-protocol/messages.js';

const hello = {
  type: 'hello',
  protocol: PROTOCOL_VERSION,
  application: 'orders',
  instanceId: 'orders-7f9c',
  run: 'Xq3_kP9-zT2mVb7w',
  host: '10.0.0.7',
  ports: [8080],
  agent: { language: 'node', version: '0.1.0' },
  capabilities: ['limit', 'breaker', 'degrade', 'http-inbound', 'http-outbound'],
  heldRevision: 0,
};
const limit = {
  id: 'r1',
  kind: 'limit',
  application: 'orders',
  target: { direction: 'inbound', resource: { type: 'application' } },
  limit: { mode: 'concurrency', maxConcurrent: 10 },
};

describe('agent protocol frames', () => {
  it('reads every agent frame of a session', () => {
    for (const frame of [
      hello,
      { type: 'ack', revision: 7 },
      { type: 'nack', revision: 8, reason: 'rule r9: limit.permitsPerSec: too large', keptRevision: 7 },
      { type: 'heartbeat', appliedRevision: 7, sentAt: 1_790_000_000_000 },
      { type: 'breaker-state', ruleId: 'b1', state: 'OPEN', at: 1_790_000_000_000 },
      { type: 'listening', ports: [8080, 8443] },
      { type: 'resync', heldRevision: 6 },
    ]) {
      expect(AgentMessageSchema.safeParse(frame).success).toBe(true);
    }
  });

  it('reads every server frame', () => {
    for (const frame of [
      { type: 'welcome', protocol: 1, heartbeatMs: 10_000, serverTime: 1 },
      { type: 'snapshot', application: 'orders', revision: 7, rules: [limit] },
      { type: 'delta', application: 'orders', fromRevision: 7, revision: 8, upserts: [limit], deletes: ['r2'] },
      { type: 'error', code: 'bad-frame', message: 'hello: protocol is required' },
      { type: 'stats-ack', kind: 'stats', seq: 42, accepted: true },
      { type: 'stats-ack', kind: 'records', seq: 7, accepted: false },
      {
        type: 'peers',
        application: 'orders',
        addresses: [
          { address: '10.0.0.8:20880', application: 'stock' },
          { address: '[::1]:8080', application: 'pricing' },
        ],
      },
    ]) {
      expect(ServerMessageSchema.safeParse(frame).success).toBe(true);
    }
  });

  it.each([
    ['an unknown type', { type: 'hi' }],
    ['an unknown field', { ...hello, admin: true }],
    ['a hello without its run', { ...hello, run: undefined }],
    ['a run too short', { ...hello, run: 'abc1234' }],
    ['a run with a dot', { ...hello, run: 'abcd.12345' }],
    ['an upper-case application', { ...hello, application: 'Orders' }],
    ['a negative revision', { type: 'ack', revision: -1 }],
    ['a fractional revision', { type: 'ack', revision: 1.5 }],
    ['a port out of range', { ...hello, ports: [70_000] }],
    ['an unknown language', { ...hello, agent: { language: 'cobol', version: '1' } }],
    ['a huge reason', { type: 'nack', revision: 1, reason: 'x'.repeat(5_000), keptRevision: 0 }],
    ['a breaker state nobody knows', { type: 'breaker-state', ruleId: 'b', state: 'AJAR', at: 1 }],
    ['too many ports', { type: 'listening', ports: Array.from({ length: 17 }, (_, i) => 8000 + i) }],
  ])('refuses %s', (_what, frame) => {
    expect(AgentMessageSchema.safeParse(frame).success).toBe(false);
  });

  it.each([
    [
      'an address without a port',
      { type: 'peers', application: 'orders', addresses: [{ address: 'stock', application: 'stock' }] },
    ],
    [
      'an address with a path',
      { type: 'peers', application: 'orders', addresses: [{ address: 'a/b:80', application: 'stock' }] },
    ],
    ['an error code nobody knows', { type: 'error', code: 'oops', message: 'x' }],
    ['an ack of a frame kind nobody knows', { type: 'stats-ack', kind: 'heartbeat', seq: 1, accepted: true }],
    ['an ack without its outcome', { type: 'stats-ack', kind: 'stats', seq: 1 }],
    ['an ack of seq 0', { type: 'stats-ack', kind: 'stats', seq: 0, accepted: true }],
  ])('refuses a server frame with %s', (_what, frame) => {
    expect(ServerMessageSchema.safeParse(frame).success).toBe(false);
  });

  it('checks pushed rules one by one, naming the first bad one', () => {
    expect(checkPushedRules([limit])).toEqual({ ok: true });
    const bad = checkPushedRules([limit, { ...limit, id: 'r2', limit: { mode: 'concurrency', maxConcurrent: 0 } }]);
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.reason).toMatch(/^rule r2: limit\.maxConcurrent: /);
    expect(checkPushedRules([JSON.parse('{"__proto__":{"x":1}}')])).toMatchObject({ ok: false });
  });
});
