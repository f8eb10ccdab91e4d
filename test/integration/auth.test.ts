import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../support/app.js';
import { stackEnv } from '../support/stack.js';

const run = Date.now().toString(36);

interface AuditItem {
  actor: string;
  action: string;
  outcome: string;
  status: number;
  target?: string;
}

describe('API tokens, roles and the audit of refusals', () => {
  let server: RunningApp;
  let viewer = '';
  let operator = '';
  let viewerId = '';
  const mongo = new MongoClient(stackEnv.MONGODB_URI);

  beforeAll(async () => {
    server = await startApp();
    const make = async (name: string, role: string) =>
      (await (await server.api('/api/tokens', { method: 'POST', json: { name, role } })).json()) as {
        token: string;
        record: { _id: string };
      };
    const v = await make(`viewer-${run}`, 'viewer');
    viewer = v.token;
    viewerId = v.record._id;
    operator = (await make(`operator-${run}`, 'operator')).token;
  });
  afterAll(async () => {
    await server.close();
    await mongo.close();
  });

  it('refuses a request without a token, or with a forged one, with 401', async () => {
    expect((await server.api('/api/registry/applications', { token: null })).status).toBe(401);
    expect((await server.api('/api/registry/applications', { token: `stw_0123456789abcdef.${'x'.repeat(43)}` })).status).toBe(
      401,
    );
    expect(
      (await server.api('/api/registry/applications', { token: viewer.slice(0, -1) + (viewer.endsWith('A') ? 'B' : 'A') }))
        .status,
    ).toBe(401);
  });

  it('lets a viewer read but not write, an operator write, and only an admin manage tokens', async () => {
    expect((await server.api('/api/registry/applications', { token: viewer })).status).toBe(200);
    const write = { method: 'POST', json: { action: 'isolate', instanceId: `nobody-${run}|dubbo|1.1.1.1:1` } };
    expect((await server.api('/api/registry/controls', { ...write, token: viewer })).status).toBe(403);
    expect((await server.api('/api/registry/controls', { ...write, token: operator })).status).toBe(404); // allowed, then not found
    expect((await server.api('/api/tokens', { token: operator })).status).toBe(403);
    expect(
      (await server.api('/api/tokens', { method: 'POST', json: { name: 'x', role: 'admin' }, token: operator })).status,
    ).toBe(403);
  });

  it('never shows or stores a secret, only its hash', async () => {
    const listed = (await (await server.api('/api/tokens')).json()) as Record<string, unknown>[];
    const mine = listed.find((t) => t['_id'] === viewerId);
    expect(mine).toMatchObject({ name: `viewer-${run}`, role: 'viewer', createdBy: 'bootstrap-admin' });
    expect(JSON.stringify(listed)).not.toContain('secretHash');
    const stored = await mongo
      .db()
      .collection('api_tokens')
      .findOne({ _id: viewerId as never });
    const secret = viewer.split('.')[1]!;
    expect(stored?.['secretHash']).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(secret);
  });

  it('stops accepting a revoked token', async () => {
    const made = (await (
      await server.api('/api/tokens', { method: 'POST', json: { name: `temp-${run}`, role: 'viewer' } })
    ).json()) as {
      token: string;
      record: { _id: string };
    };
    expect((await server.api('/api/registry/sources', { token: made.token })).status).toBe(200);
    expect((await server.api(`/api/tokens/${made.record._id}`, { method: 'DELETE' })).status).toBe(200);
    expect((await server.api('/api/registry/sources', { token: made.token })).status).toBe(401);
  });

  it('audits refusals and token changes, with filters', async () => {
    const denied = (await (await server.api(`/api/audit?action=auth.denied&actor=viewer-${run}`)).json()) as {
      items: AuditItem[];
    };
    expect(denied.items[0]).toMatchObject({ outcome: 'denied', status: 403, target: 'POST /api/registry/controls' });
    const anonymous = (await (await server.api('/api/audit?action=auth.denied&actor=anonymous&pageSize=5')).json()) as {
      items: AuditItem[];
    };
    expect(anonymous.items.some((i) => i.status === 401 && i.target === 'GET /api/registry/applications')).toBe(true);
    const tokens = (await (await server.api('/api/audit?action=token.revoke')).json()) as { items: AuditItem[] };
    expect(tokens.items[0]).toMatchObject({ actor: 'bootstrap-admin', outcome: 'ok' });
    expect((await server.api('/api/audit?outcome=maybe')).status).toBe(400);
    expect((await server.api('/api/audit', { token: null })).status).toBe(401);
  });
});
