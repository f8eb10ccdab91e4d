import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../support/app.js';
import { hostilePayload } from '../support/hostile-rules.js';

const run = Date.now().toString(36);
const APP = `orders-${run}`;

const limit = {
  kind: 'limit',
  target: { direction: 'inbound', caller: 'web', resource: { type: 'http', method: 'GET', path: '/api/orders/{id}' } },
  limit: { mode: 'qps', permitsPerSec: 200, warmUp: {}, queue: { maxWaitMs: 200 } },
};
const breaker = {
  kind: 'breaker',
  target: { direction: 'outbound', callee: 'stock', resource: { type: 'dubbo', interface: 'com.example.StockService' } },
  breaker: { strategy: 'errorRatio', threshold: 0.5, windowMs: 10_000, minCalls: 20, openMs: 5_000, probes: 5 },
};

interface Rule {
  id: string;
  kind: string;
  enabled: boolean;
  limit?: { burst: number; warmUp?: { coldFactor: number } };
}
interface Write {
  revision: number;
  changed: boolean;
  rule?: Rule;
  conflicts: { kind: string; ruleIds: string[] }[];
}
interface RuleSet {
  revision: number;
  rules: Rule[];
  conflicts: { kind: string; ruleIds: string[] }[];
}

/**
 * The JSON text a client would send for a generated payload: keys such as __proto__ stay on the wire;
 * values JSON cannot carry become strings; nesting too deep for JSON.stringify is sent as deep text.
 */
function wire(payload: unknown): string {
  try {
    return JSON.stringify({ rule: payload }, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    return `{"rule":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`;
  }
}

describe('governance rules over the real database', () => {
  let server: RunningApp;
  let operator = '';
  let viewer = '';
  const call = async <T>(path: string, init: Parameters<RunningApp['api']>[1] = {}) => {
    const res = await server.api(path, { token: operator, ...init });
    return { status: res.status, etag: res.headers.get('etag'), body: (await res.json()) as T };
  };
  const current = () => call<RuleSet>(`/api/applications/${APP}/rules`);
  let limitId = '';
  let breakerId = '';

  beforeAll(async () => {
    server = await startApp();
    const token = async (role: string) =>
      (
        (await (await server.api('/api/tokens', { method: 'POST', json: { name: `${role}-${APP}`, role } })).json()) as {
          token: string;
        }
      ).token;
    operator = await token('operator');
    viewer = await token('viewer');
  });
  afterAll(() => server.close());

  it('creates rules as revisions, applying the schema’s defaults', async () => {
    const first = await call<Write>(`/api/applications/${APP}/rules`, {
      method: 'POST',
      json: { rule: limit, reason: 'protect orders' },
    });
    expect(first.status).toBe(201);
    expect(first.etag).toBe('"1"');
    expect(first.body).toMatchObject({
      revision: 1,
      changed: true,
      rule: { kind: 'limit', enabled: true, limit: { burst: 1, warmUp: { coldFactor: 3 } } },
    });
    limitId = first.body.rule!.id;
    const second = await call<Write>(`/api/applications/${APP}/rules`, {
      method: 'POST',
      json: { rule: breaker },
      headers: { 'If-Match': '"1"' },
    });
    expect(second.body.revision).toBe(2);
    breakerId = second.body.rule!.id;
    const set = await current();
    expect(set.etag).toBe('"2"');
    expect(set.body.rules.map((r) => r.kind).sort()).toEqual(['breaker', 'limit']);
  });

  it('refuses a write naming a stale revision with 409, changing nothing', async () => {
    const stale = await call<{ currentRevision: number }>(`/api/applications/${APP}/rules`, {
      method: 'POST',
      json: { rule: { ...limit, target: { ...limit.target, caller: 'app' } } },
      headers: { 'If-Match': '"1"' },
    });
    expect(stale.status).toBe(409);
    expect(stale.body.currentRevision).toBe(2);
    expect((await current()).body).toMatchObject({ revision: 2, rules: [{}, {}] });
  });

  it('updates (disabling a rule), skips a write that changes nothing, deletes', async () => {
    const disabled = await call<Write>(`/api/applications/${APP}/rules/${breakerId}`, {
      method: 'PUT',
      json: { rule: { ...breaker, enabled: false } },
    });
    expect(disabled.body).toMatchObject({ revision: 3, changed: true, rule: { enabled: false } });
    const same = await call<Write>(`/api/applications/${APP}/rules/${breakerId}`, {
      method: 'PUT',
      json: { rule: { ...breaker, enabled: false } },
    });
    expect(same.body).toMatchObject({ revision: 3, changed: false });
    const removed = await call<Write>(`/api/applications/${APP}/rules/${limitId}?reason=obsolete`, { method: 'DELETE' });
    expect(removed.body.revision).toBe(4);
    expect((await current()).body.rules.map((r) => r.id)).toEqual([breakerId]);
    expect((await call(`/api/applications/${APP}/rules/no-such-rule`, { method: 'PUT', json: { rule: breaker } })).status).toBe(
      404,
    );
  });

  it('keeps the full history, per application and per rule, and rolls back to any revision as a new one', async () => {
    const history = await call<{ total: number; items: { revision: number; kind: string; actor: string; reason: string }[] }>(
      `/api/applications/${APP}/rules/history`,
    );
    expect(history.body.items.map((r) => [r.revision, r.kind])).toEqual([
      [4, 'delete'],
      [3, 'update'],
      [2, 'create'],
      [1, 'create'],
    ]);
    expect(history.body.items[3]).toMatchObject({ actor: `operator-${APP}`, reason: 'protect orders' });
    const ofBreaker = await call<{ items: { revision: number; changes: { before: Rule | null; after: Rule | null }[] }[] }>(
      `/api/applications/${APP}/rules/${breakerId}/history`,
    );
    expect(
      ofBreaker.body.items.map((r) => [r.revision, r.changes[0]?.before?.enabled ?? null, r.changes[0]?.after?.enabled]),
    ).toEqual([
      [3, true, false],
      [2, null, true],
    ]);

    const rolled = await call<Write>(`/api/applications/${APP}/rules/rollback`, {
      method: 'POST',
      json: { toRevision: 2, reason: 'incident' },
    });
    expect(rolled.body).toMatchObject({ revision: 5, changed: true });
    const after = await current();
    expect(after.body.revision).toBe(5);
    expect(after.body.rules.map((r) => [r.id, r.enabled]).sort()).toEqual(
      [
        [limitId, true],
        [breakerId, true],
      ].sort(),
    );
    const latest = await call<{ items: { kind: string; rollbackTo: number }[] }>(
      `/api/applications/${APP}/rules/history?pageSize=1`,
    );
    expect(latest.body.items[0]).toMatchObject({ kind: 'rollback', rollbackTo: 2 });
    expect((await call(`/api/applications/${APP}/rules/rollback`, { method: 'POST', json: { toRevision: 9 } })).status).toBe(400);
  });

  it('validates without writing (dry run) and reports conflicts', async () => {
    const dry = await call<{ valid: boolean; conflicts: { kind: string }[] }>(`/api/applications/${APP}/rules/validate`, {
      method: 'POST',
      json: { rule: limit },
    });
    expect(dry.body.valid).toBe(true);
    expect(dry.body.conflicts.map((c) => c.kind)).toEqual(['duplicate']);
    const bad = await call<{ valid: boolean; issues: { path: string }[] }>(`/api/applications/${APP}/rules/validate`, {
      method: 'POST',
      json: { rule: { ...breaker, breaker: { ...breaker.breaker, threshold: 7 } } },
    });
    expect(bad.body).toMatchObject({ valid: false, issues: [{ path: 'rule.breaker.threshold' }] });
    expect((await current()).body.revision).toBe(5);
    const duplicate = await call<Write>(`/api/applications/${APP}/rules`, { method: 'POST', json: { rule: limit } });
    expect(duplicate.body.conflicts.map((c) => c.kind)).toContain('duplicate');
    expect((await current()).body.conflicts.length).toBeGreaterThan(0);
  });

  it('lets a viewer read but not write, and audits every change with before and after', async () => {
    expect((await call(`/api/applications/${APP}/rules`, { token: viewer })).status).toBe(200);
    expect((await call(`/api/applications/${APP}/rules`, { method: 'POST', json: { rule: limit }, token: viewer })).status).toBe(
      403,
    );
    const audit = await call<{
      items: { action: string; actor: string; revision: number; before: unknown; after: unknown; reason: string }[];
    }>(`/api/audit?application=${APP}&action=rule.update`);
    expect(audit.body.items[0]).toMatchObject({
      actor: `operator-${APP}`,
      revision: 3,
      before: { enabled: true },
      after: { enabled: false },
    });
    const listed = await call<{ items: { application: string }[] }>(`/api/rules?application=${APP}&kind=limit`);
    expect(listed.body.items.length).toBe(2);
    const outbound = await call<{ items: { kind: string; targetKey: string }[] }>(
      `/api/rules?target=${encodeURIComponent(`${APP}|outbound`)}`,
    );
    expect(outbound.body.items.map((r) => [r.kind, r.targetKey])).toEqual([
      ['breaker', `${APP}|outbound|stock|dubbo|com.example.StockService|*`],
    ]);
  });

  it('rejects 1,000 malformed and hostile payloads with a clear 4xx, writing nothing', async () => {
    const before = (await current()).body;
    const payloads = fc.sample(hostilePayload, { numRuns: 1_000, seed: 7 });
    const statuses = new Map<number, number>();
    // A few at a time: the server is the one under test, not the client.
    for (let i = 0; i < payloads.length; i += 20) {
      await Promise.all(
        payloads.slice(i, i + 20).map(async (payload) => {
          const body = wire(payload);
          const res = await server.api(`/api/applications/${APP}/rules`, {
            method: 'POST',
            token: operator,
            headers: { 'Content-Type': 'application/json' },
            body,
          });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          const answer = (await res.json()) as { statusCode: number; message: string; issues?: unknown[] };
          expect(res.status).toBeGreaterThanOrEqual(400);
          expect(res.status).toBeLessThan(500);
          expect(answer.message.length).toBeGreaterThan(0);
        }),
      );
    }
    expect([...statuses.keys()].every((s) => s === 400 || s === 413)).toBe(true);
    const after = (await current()).body;
    expect(after.revision).toBe(before.revision);
    expect(after.rules).toEqual(before.rules);
  }, 120_000);
});
