import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine, INBOUND, HTTP, ManualClock } from '../../agent/src/engine/index.js';
import { readConfig } from '../../agent/src/runtime/config.js';
import { CallRecorder } from '../../agent/src/runtime/records.js';
import { Flight } from '../../agent/src/runtime/interception.js';
import { Logger } from '../../agent/src/runtime/log.js';
import { callerOf, MAX_PEERS, Peers } from '../../agent/src/runtime/names.js';
import { RuleSet, validateRules } from '../../agent/src/runtime/rule-set.js';
import { StateStore } from '../../agent/src/runtime/state-store.js';
import { APP, concurrency, errorCount, forced, inbound, outbound, path, qps } from './agent-runtime-support.js';

const RULES = [
  forced('d1', inbound(path('/forced'))),
  qps('q1', inbound(path('/api/**')), 50, 200),
  concurrency('c1', outbound('stock', APP), 5),
  errorCount('b1', outbound('stock', path('/fail')), 3),
];

describe('configuration', () => {
  const base = { STEWARD_SERVER_URL: 'http://steward:3000', STEWARD_APPLICATION: 'Orders' };

  it('reads the environment, with defaults', () => {
    const read = readConfig(base);
    expect(read.ok).toBe(true);
    if (!read.ok) return;
    expect(read.config).toMatchObject({
      serverUrl: 'http://steward:3000',
      application: 'orders',
      token: undefined,
      logLevel: 'warn',
    });
    expect(read.config.stateDir).toBe(join(tmpdir(), 'steward-agent'));
    expect(read.config.instanceId).toMatch(new RegExp(`-${process.pid}-[0-9a-f]{6}$`));
    expect(read.config.host).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
  });

  it('takes every setting it is given', () => {
    const read = readConfig({
      ...base,
      STEWARD_AGENT_TOKEN: 'stw_x',
      STEWARD_STATE_DIR: '/var/lib/steward',
      STEWARD_INSTANCE_ID: 'orders-1',
      STEWARD_HOST: '10.0.0.7',
      STEWARD_LOG: 'DEBUG',
    });
    expect(read).toMatchObject({
      ok: true,
      config: { token: 'stw_x', stateDir: '/var/lib/steward', instanceId: 'orders-1', host: '10.0.0.7', logLevel: 'debug' },
    });
  });

  it.each([
    ['no server', { STEWARD_APPLICATION: 'orders' }, /STEWARD_SERVER_URL is required/],
    ['no application', { STEWARD_SERVER_URL: 'http://s' }, /STEWARD_APPLICATION is required/],
    ['a bad name', { ...base, STEWARD_APPLICATION: 'my app' }, /STEWARD_APPLICATION must be/],
    ['a bad URL', { ...base, STEWARD_SERVER_URL: 'ftp://s' }, /STEWARD_SERVER_URL must be an http/],
    ['a bad level', { ...base, STEWARD_LOG: 'loud' }, /STEWARD_LOG/],
  ])('refuses %s with one reason', (_name, env, reason) => {
    const read = readConfig(env);
    expect(read).toMatchObject({ ok: false, disabled: false });
    if (!read.ok) expect(read.reason).toMatch(reason);
  });

  it('is off when disabled, whatever else is set', () => {
    expect(readConfig({ STEWARD_AGENT_ENABLED: 'false' })).toMatchObject({ ok: false, disabled: true });
  });
});

describe('who is on the other side', () => {
  it.each([
    ['web', 'web'],
    ['Web', 'web'],
    [undefined, ''],
    ['', ''],
    ['web, mobile', ''],
    ['-web', ''],
    [['web'], ''],
  ])('caller header %j → %j', (header, caller) => {
    expect(callerOf(header)).toBe(caller);
  });

  it('names the callee from the peers map, else from a service id host, else by its address', () => {
    const peers = new Peers();
    peers.replace([
      { address: '10.0.0.9:8080', application: 'stock' },
      { address: '[::1]:9000', application: 'billing' },
      { address: 'Stock-Host:80', application: 'stock' },
    ]);
    expect(peers.calleeOf('10.0.0.9', 8080)).toBe('stock');
    expect(peers.calleeOf('::1', 9000)).toBe('billing');
    expect(peers.calleeOf('[::1]', 9000)).toBe('billing');
    expect(peers.calleeOf('stock-host', 80)).toBe('stock');
    expect(peers.calleeOf('STOCK', 80)).toBe('stock');
    // Unresolved: the address, normalised as the peers map writes it (the server may know it).
    expect(peers.calleeOf('10.0.0.9', 8081)).toBe('10.0.0.9:8081');
    expect(peers.calleeOf('localhost', 80)).toBe('localhost:80');
    expect(peers.calleeOf('::1', 80)).toBe('[::1]:80');
    expect(peers.calleeOf('FE80::A', 443)).toBe('[fe80::a]:443');
    expect(peers.calleeOf('[FE80::A]', 443)).toBe('[fe80::a]:443');
    expect(peers.calleeOf('pay_ment.internal', 80)).toBe('pay_ment.internal');
    // Neither a service id nor an address of at most 128 characters.
    expect(peers.calleeOf('h'.repeat(130), 80)).toBe('');
    expect(peers.calleeOf('bad host', 80)).toBe('');
    peers.replace([]);
    expect(peers.calleeOf('10.0.0.9', 8080)).toBe('10.0.0.9:8080');
  });

  it('keeps at most MAX_PEERS addresses', () => {
    const peers = new Peers();
    const entries = Array.from({ length: MAX_PEERS + 5 }, (_, i) => ({
      address: `10.1.${i >> 8}.${i & 255}:80`,
      application: 'a',
    }));
    expect(peers.replace(entries)).toBe(5);
    expect(peers.size).toBe(MAX_PEERS);
  });
});

describe('pushed rules are checked whole', () => {
  it('accepts a valid set, with defaults applied', () => {
    const checked = validateRules(RULES);
    expect(checked.ok && checked.rules.map((r) => r.id)).toEqual(['d1', 'q1', 'c1', 'b1']);
    expect(checked.ok && checked.rules[0]).toMatchObject({ enabled: true, fallback: { http: { status: 418, headers: {} } } });
  });

  it('names the first bad rule', () => {
    const bad = { ...qps('q2', inbound(APP), 0), limit: { mode: 'qps', permitsPerSec: 0 } };
    expect(validateRules([RULES[0], bad])).toEqual({
      ok: false,
      reason: expect.stringMatching(/^rule q2: limit.permitsPerSec: /) as string,
    });
    expect(validateRules([{ kind: 'limit' }])).toEqual({ ok: false, reason: expect.stringMatching(/^rule #0: /) as string });
  });

  it('refuses an id twice in one set', () => {
    expect(validateRules([RULES[0], RULES[0]])).toEqual({ ok: false, reason: 'rule d1: the id occurs twice in the set' });
  });
});

describe('rule set and state file (fail-static)', () => {
  let dir: string;
  const log = new Logger('silent');
  const engine = () => new Engine({ application: 'orders', clock: new ManualClock(0) });
  const forcedAnswer = (e: Engine) => e.enter(INBOUND, '', HTTP, 'GET', '/forced');

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'steward-agent-test-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('saves what it applies and restores it, before any server contact', async () => {
    const first = engine();
    const store = new StateStore(join(dir, 'nested'), 'orders', log);
    const rules = new RuleSet(first, store, log);
    expect(rules.replace(7, RULES)).toEqual({ ok: true });
    expect(forcedAnswer(first)).toMatchObject({ kind: 'answer', status: 418 });
    await store.flushed();
    const saved = JSON.parse(readFileSync(store.file, 'utf8')) as Record<string, unknown>;
    expect(saved).toMatchObject({ application: 'orders', revision: 7, savedAt: expect.any(Number) as number });
    expect(readdirSync(join(dir, 'nested'))).toEqual(['orders.rules.json']);

    const second = engine();
    const restored = new RuleSet(second, new StateStore(join(dir, 'nested'), 'orders', log), log);
    restored.restore();
    expect(restored.revision).toBe(7);
    expect(forcedAnswer(second)).toMatchObject({ kind: 'answer', status: 418 });
  });

  it('saves the newest of quick successive sets', async () => {
    const store = new StateStore(dir, 'orders', log);
    const rules = new RuleSet(engine(), store, log);
    rules.replace(1, RULES);
    rules.patch(2, [], ['d1']);
    rules.patch(3, [], ['q1']);
    await store.flushed();
    const saved = JSON.parse(readFileSync(store.file, 'utf8')) as { revision: number; rules: { id: string }[] };
    expect(saved.revision).toBe(3);
    expect(saved.rules.map((r) => r.id)).toEqual(['c1', 'b1']);
  });

  it('applies a delta: upserts by id, then deletes', () => {
    const e = engine();
    const rules = new RuleSet(e, new StateStore(dir, 'orders', log), log);
    rules.replace(1, RULES);
    expect(rules.patch(2, [forced('d1', inbound(path('/forced')), { status: 299 })], ['q1', 'unknown'])).toEqual({ ok: true });
    expect(rules.revision).toBe(2);
    expect(forcedAnswer(e)).toMatchObject({ status: 299 });
    expect(rules.patch(3, [{ id: 'x' }], [])).toMatchObject({ ok: false });
    expect(rules.revision).toBe(2);
    expect(forcedAnswer(e)).toMatchObject({ status: 299 });
  });

  it.each([
    ['not JSON', '{"application":'],
    ['not a state file', '{"hello":1}'],
    ['another application', JSON.stringify({ application: 'stock', revision: 3, rules: [], savedAt: 1 })],
    ['an invalid rule', JSON.stringify({ application: 'orders', revision: 3, rules: [{ id: 'x' }], savedAt: 1 })],
  ])('ignores a file that is %s, with a warning', (_name, text) => {
    writeFileSync(join(dir, 'orders.rules.json'), text);
    const lines: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = (chunk: string) => lines.push(chunk) > 0;
    try {
      const e = engine();
      const rules = new RuleSet(e, new StateStore(dir, 'orders', new Logger('warn')), new Logger('warn'));
      rules.restore();
      expect(rules.revision).toBe(0);
      expect(forcedAnswer(e)).toMatchObject({ kind: 'call' });
    } finally {
      process.stderr.write = write;
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\[steward-agent\] \{.*"level":"warn".*ignored/);
  });

  it('starts empty without a file, silently', () => {
    const rules = new RuleSet(engine(), new StateStore(dir, 'orders', log), log);
    rules.restore();
    expect(rules.revision).toBe(0);
  });
});

describe('a flight', () => {
  it('exits its call once, and never after an answer', () => {
    const e = new Engine({ application: 'orders', clock: new ManualClock(0) });
    const checked = validateRules([concurrency('c1', inbound(APP), 1)]);
    if (checked.ok) e.apply(checked.rules);
    const call = e.enter(INBOUND, '', HTTP, 'GET', '/');
    expect(call.kind).toBe('call');
    if (call.kind !== 'call') return;
    const recorder = new CallRecorder({ application: 'orders', sample: 0, headers: [] });
    const flight = new Flight(call, { active: true, application: 'orders', engine: e, recorder, fault: () => undefined });
    expect(e.enter(INBOUND, '', HTTP, 'GET', '/')).toMatchObject({ kind: 'answer', reason: 'limited' });
    flight.exit(false);
    const next = e.enter(INBOUND, '', HTTP, 'GET', '/');
    expect(next.kind).toBe('call');
    flight.exit(false); // a second exit must not release the next call's slot
    expect(e.enter(INBOUND, '', HTTP, 'GET', '/')).toMatchObject({ kind: 'answer', reason: 'limited' });
    expect(flight.resume()).toBeUndefined();
  });

  it('contains an engine fault: the call goes ahead, the fault is counted', () => {
    const faults: string[] = [];
    const broken = {
      kind: 'call' as const,
      waitMs: 10,
      startedAt: 0,
      slowMs: 1_000,
      resume: () => {
        throw new Error('resume');
      },
      exit: () => {
        throw new Error('exit');
      },
    };
    const gate = {
      active: true,
      application: 'orders',
      engine: new Engine({ application: 'orders', clock: new ManualClock() }),
      recorder: new CallRecorder({ application: 'orders', sample: 0, headers: [] }),
    };
    expect(new Flight(broken, { ...gate, fault: (kind) => faults.push(kind) }).resume()).toBeNull();
    new Flight(broken, { ...gate, fault: (kind) => faults.push(kind) }).exit(true);
    expect(faults).toEqual(['resume', 'exit']);
  });
});
