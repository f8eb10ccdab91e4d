import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallRecordSchema } from '../../src/agent-protocol/messages.js';
import { Engine, HTTP, INBOUND, ManualClock, OUTBOUND, type Answer } from '../../agent/src/engine/index.js';
import { Faults, Logger } from '../../agent/src/runtime/log.js';
import { Peers } from '../../agent/src/runtime/names.js';
import {
  CallRecorder,
  headerValue,
  MAX_NOTABLE_PER_SECOND,
  MAX_SAMPLED_PER_SECOND,
  pathOf,
  type CallSite,
} from '../../agent/src/runtime/records.js';
import {
  ACK_TIMEOUT_MS,
  MAX_BUFFERED_FRAMES,
  MAX_ENTRIES_PER_FRAME,
  Outbox,
  REFUSED_RETRY_MS,
  Reporter,
  type StatsFrame,
} from '../../agent/src/runtime/reporter.js';
import { RuleSet } from '../../agent/src/runtime/rule-set.js';
import { Session } from '../../agent/src/runtime/session.js';
import { StateStore } from '../../agent/src/runtime/state-store.js';
import { newTraceId, RequestContext, validTraceId } from '../../agent/src/runtime/trace.js';
import { FakeSteward, until, type Received } from './agent-runtime-support.js';

// The agent's side of statistics: outboxes (numbering, bounded buffering, drops), call records
// (what is kept, caps, details, trace ids), and the reporter over a real session against a
// socket.io server playing Steward's side.

const site = (extra: Partial<CallSite> = {}): CallSite => ({
  direction: INBOUND,
  remote: 'web',
  method: 'GET',
  target: '/api/orders/7?expand=items',
  headers: { 'x-tenant': 'acme' },
  context: undefined,
  traceId: '0123456789abcdef',
  ...extra,
});

const limited: Answer = {
  kind: 'answer',
  reason: 'limited',
  ruleId: 'lim-1',
  status: 429,
  headers: [],
  body: new Uint8Array(),
  rpcMessage: undefined,
  rpcValue: undefined,
};

describe('an outbox', () => {
  const frame = (seq: number, entries: number): StatsFrame => ({
    type: 'stats',
    seq,
    second: seq,
    dropped: 0,
    entries: Array.from({ length: entries }, () => ({}) as StatsFrame['entries'][number]),
  });
  let now = 0;
  const outbox = (maxFrames: number, maxItems: number) =>
    new Outbox<StatsFrame>(
      maxFrames,
      maxItems,
      (f) => f.entries.length,
      () => now,
    );
  /** Sends what the outbox gives, recording [seq, dropped]. */
  const sender = () => {
    const sent: [number, number][] = [];
    return { sent, send: (f: StatsFrame) => sent.push([f.seq, f.dropped]) > 0 };
  };

  it('keeps at most its frames and items, drops the oldest first, and reports the drops in the next frame sent', () => {
    const box = outbox(3, 10);
    for (let i = 0; i < 5; i++) box.add(frame(box.nextSeq(), 2));
    expect(box.buffered).toBe(3);
    box.add(frame(box.nextSeq(), 5)); // 2 + 2 + 5 items: within 10, but 4 frames
    expect(box.buffered).toBe(3);
    box.add(frame(box.nextSeq(), 20)); // alone over the item cap: kept, the others dropped
    expect(box.buffered).toBe(1);
    const { sent, send } = sender();
    expect(box.flush(() => false, 10)).toBe(2); // refused: kept
    expect(box.flush(send, 10)).toBe(0);
    expect(sent).toEqual([[7, 6]]);
    box.acknowledge(7, true);
    expect({ sent: box.sent, dropped: box.dropped, buffered: box.buffered }).toEqual({ sent: 1, dropped: 6, buffered: 0 });
    for (let i = 0; i < 3; i++) box.add(frame(box.nextSeq(), 1));
    expect(box.flush(send, 2)).toBe(1);
    expect(box.flush(send, 2)).toBe(0);
    expect(sent.slice(1)).toEqual([
      [8, 0],
      [9, 0],
      [10, 0],
    ]);
  });

  it('keeps the frames sent until they are acknowledged, within the same bounds, the oldest dropped first', () => {
    const box = outbox(4, 10);
    const { sent, send } = sender();
    for (let i = 0; i < 3; i++) box.add(frame(box.nextSeq(), 2));
    box.flush(send, 10);
    expect([box.buffered, box.unacknowledged]).toEqual([3, 3]);
    box.add(frame(box.nextSeq(), 2));
    box.add(frame(box.nextSeq(), 2)); // 5 frames: the oldest, in flight, goes
    expect([box.buffered, box.unacknowledged, box.dropped]).toEqual([4, 2, 1]);
    box.acknowledge(3, true); // frees its items
    box.add(frame(box.nextSeq(), 5)); // 2 + 2 + 2 + 5 items: the oldest, in flight, goes
    expect([box.buffered, box.unacknowledged, box.dropped]).toEqual([3, 0, 2]);
    box.flush(send, 10);
    box.resend(); // sent again as they were: the drops stay reported in frame 4
    box.flush(send, 10);
    expect(sent).toEqual([
      [1, 0],
      [2, 0],
      [3, 0],
      [4, 2],
      [5, 0],
      [6, 0],
      [4, 2],
      [5, 0],
      [6, 0],
    ]);
    for (const seq of [5, 4, 6, 6, 1, 99]) box.acknowledge(seq, true); // out of order, twice, dropped, unknown
    expect([box.buffered, box.sent, box.dropped]).toEqual([0, 6, 2]);
    box.add(frame(box.nextSeq(), 5));
    box.add(frame(box.nextSeq(), 5)); // every item freed: 10 fit again
    expect([box.buffered, box.dropped]).toEqual([2, 2]);
  });

  it('sends every frame in flight again after a new session, first and in seq order', () => {
    const box = outbox(10, 100);
    const { sent, send } = sender();
    for (let i = 0; i < 3; i++) box.add(frame(box.nextSeq(), 1));
    box.flush(send, 2);
    box.acknowledge(1, true);
    box.flush(send, 1);
    box.add(frame(box.nextSeq(), 1));
    box.add(frame(box.nextSeq(), 1));
    box.flush(() => false, 10); // the connection broke: 2 and 3 in flight, 4 and 5 waiting
    box.resend();
    expect(box.flush(send, 3)).toBe(1);
    expect(box.flush(send, 3)).toBe(0);
    expect(sent.map(([seq]) => seq)).toEqual([1, 2, 3, 2, 3, 4, 5]);
    expect([box.sent, box.unacknowledged]).toEqual([5, 4]);
    box.resend();
    box.flush(send, 10);
    expect(sent.slice(7).map(([seq]) => seq)).toEqual([2, 3, 4, 5]);
    for (const seq of [2, 3, 4, 5]) box.acknowledge(seq, true);
    expect(box.buffered).toBe(0);
  });

  it(`sends a refused frame again, before newer ones, after ${REFUSED_RETRY_MS} ms; a new session does not wait`, () => {
    now = 0;
    const box = outbox(10, 100);
    const { sent, send } = sender();
    for (let i = 0; i < 3; i++) box.add(frame(box.nextSeq(), 1));
    box.flush(send, 10);
    box.acknowledge(1, true);
    box.acknowledge(2, false);
    box.acknowledge(3, false);
    box.add(frame(box.nextSeq(), 1));
    expect([box.buffered, box.unacknowledged]).toEqual([3, 0]);
    now = REFUSED_RETRY_MS - 1;
    expect(box.flush(send, 10)).toBe(0);
    expect(sent).toHaveLength(3);
    now = REFUSED_RETRY_MS;
    box.flush(send, 10);
    expect(sent.slice(3).map(([seq]) => seq)).toEqual([2, 3, 4]);
    box.acknowledge(2, false);
    box.resend();
    box.flush(send, 10);
    expect(sent.slice(6).map(([seq]) => seq)).toEqual([2, 3, 4]);
  });

  it(`sends a frame again when it is not acknowledged within ${ACK_TIMEOUT_MS / 1_000} s; a late acknowledgement still counts`, () => {
    now = 0;
    const box = outbox(10, 100);
    const { sent, send } = sender();
    box.add(frame(box.nextSeq(), 1));
    box.flush(send, 10);
    now = 10_000;
    box.add(frame(box.nextSeq(), 1));
    box.flush(send, 10);
    now = ACK_TIMEOUT_MS - 1;
    box.expire();
    expect(box.flush(send, 10)).toBe(0);
    now = ACK_TIMEOUT_MS;
    box.expire();
    box.flush(send, 10);
    expect(sent.map(([seq]) => seq)).toEqual([1, 2, 1]);
    now = 10_000 + ACK_TIMEOUT_MS;
    box.expire(); // 2 is late too, 1 (sent again) is not
    expect([box.buffered, box.unacknowledged]).toEqual([2, 1]);
    box.acknowledge(2, true); // it had arrived after all: not sent again
    box.acknowledge(1, true);
    expect(box.buffered).toBe(0);
    expect(box.flush(send, 10)).toBe(0);
    expect(sent).toHaveLength(3);
  });
});

describe('call records', () => {
  it('keeps every slow, failed and blocked call up to the cap a second, and a sample of the rest', () => {
    const recorder = new CallRecorder({ application: 'orders', sample: 1, headers: [] });
    for (let i = 0; i < MAX_NOTABLE_PER_SECOND; i++) recorder.completed(site(), i % 2 === 0, 500, 10, i % 2 === 1, 1_000 + i);
    expect(recorder.keepsBlocked()).toBe(false);
    recorder.completed(site(), true, 500, 10, false, 1);
    for (let i = 0; i < MAX_SAMPLED_PER_SECOND + 5; i++) recorder.completed(site(), false, 200, 1, false, 1);
    const records = recorder.drain();
    expect(records.filter((r) => r.kept === 'error')).toHaveLength(MAX_NOTABLE_PER_SECOND / 2);
    expect(records.filter((r) => r.kept === 'slow')).toHaveLength(MAX_NOTABLE_PER_SECOND / 2);
    expect(records.filter((r) => r.kept === 'sampled')).toHaveLength(MAX_SAMPLED_PER_SECOND);
    expect(recorder.skipped).toBe(1 + 1 + 5);
    // A new second: the caps start again.
    expect(recorder.keepsBlocked()).toBe(true);
    recorder.answered(site(), limited, 0, 5);
    expect(recorder.drain()).toHaveLength(1);
  });

  it('samples the share configured', () => {
    const none = new CallRecorder({ application: 'orders', sample: 0, headers: [] });
    for (let i = 0; i < 1_000; i++) none.completed(site(), false, 200, 1, false, 1);
    expect(none.drain()).toEqual([]);
    const some = new CallRecorder({ application: 'orders', sample: 0.05, headers: [] });
    let kept = 0;
    for (let s = 0; s < 20; s++) {
      for (let i = 0; i < 1_000; i++) some.completed(site(), false, 200, 1, false, 1);
      kept += some.drain().length;
    }
    expect(kept).toBeGreaterThan(700); // 1,000 expected; far outside a 1 % or 10 % rate
    expect(kept).toBeLessThan(1_300);
  });

  it('writes records as the protocol has them: both sides, path without query, outcome, rule and details', () => {
    const recorder = new CallRecorder({ application: 'orders', sample: 1, headers: ['x-tenant', 'x-user', 'x-missing'] });
    const context = new RequestContext('ABCDEF0123456789ABCDEF0123456789', { 'x-user': 'u-7', 'x-tenant': 'from-inbound' });
    recorder.completed(site({ context, headers: { 'X-Tenant': 'acme' } }), false, 200, 12.4, false, 1_700_000_000_123.6);
    recorder.answered(
      site({ direction: OUTBOUND, remote: 'stock', method: 'POST', target: '/api/stock#frag', headers: new Headers() }),
      { ...limited, reason: 'fallback', ruleId: 'fb-1', status: 203 },
      250,
      1_700_000_000_000,
    );
    recorder.answered(
      site({ headers: ['X-User', 'raw', 'x-tenant', ['a', 'b']] }),
      { ...limited, reason: 'breaker-half-open' },
      0,
      1,
    );
    recorder.completed(site({ headers: { 'x-tenant': 'x'.repeat(300) } }), true, 0, 3, true, 1);
    const records = recorder.drain();
    for (const record of records) expect(CallRecordSchema.safeParse(record).success).toBe(true);
    expect(records[0]).toEqual({
      at: 1_700_000_000_124,
      traceId: '0123456789abcdef',
      direction: 'inbound',
      caller: 'web',
      callee: 'orders',
      protocol: 'http',
      method: 'GET',
      path: '/api/orders/7',
      status: 200,
      latencyMs: 12,
      outcome: 'success',
      kept: 'sampled',
      details: { 'x-tenant': 'acme', 'x-user': 'u-7' },
    });
    expect(records[1]).toEqual({
      at: 1_700_000_000_000,
      traceId: '0123456789abcdef',
      direction: 'outbound',
      caller: 'orders',
      callee: 'stock',
      protocol: 'http',
      method: 'POST',
      path: '/api/stock',
      status: 203,
      latencyMs: 250,
      outcome: 'degraded',
      kept: 'blocked',
      ruleId: 'fb-1',
    });
    expect(records[2]).toMatchObject({ outcome: 'broken', kept: 'blocked', details: { 'x-user': 'raw', 'x-tenant': 'a, b' } });
    expect(records[3]).toMatchObject({ outcome: 'error', kept: 'error', status: 0 });
    expect((records[3]!.details!['x-tenant'] ?? '').length).toBe(256);
    expect(context.traceId).toBe('abcdef0123456789abcdef0123456789');
  });

  it('reads headers of every form Node and fetch use', () => {
    expect(headerValue({ 'x-a': '1' }, 'x-a')).toBe('1');
    expect(headerValue({ 'X-A': 2 }, 'x-a')).toBe('2');
    expect(headerValue(['X-A', '3'], 'x-a')).toBe('3');
    expect(headerValue(new Headers({ 'X-A': '4' }), 'x-a')).toBe('4');
    expect(headerValue({ 'x-b': '1' }, 'constructor')).toBeUndefined();
    expect(headerValue(undefined, 'x-a')).toBeUndefined();
    expect(pathOf('/a/b?c#d')).toBe('/a/b');
    expect(pathOf('/a#b?c')).toBe('/a');
  });

  it('takes a valid trace id from the request (lower-cased) and makes new ones otherwise', () => {
    expect(validTraceId('0123456789ABCDEF')).toBe('0123456789abcdef');
    expect(validTraceId('0123456789abcde')).toBeUndefined();
    expect(validTraceId(`${'a'.repeat(33)}`)).toBeUndefined();
    expect(validTraceId('0123456789abcdeg')).toBeUndefined();
    expect(validTraceId(['0123456789abcdef'])).toBeUndefined();
    const ids = new Set(Array.from({ length: 2_000 }, () => newTraceId()));
    expect(ids.size).toBe(2_000);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}$/);
    const context = new RequestContext('not-a-trace', {});
    expect(context.traceId).toMatch(/^[0-9a-f]{16}$/);
    expect(context.traceId).toBe(context.traceId);
  });
});

describe('the reporter over a session', () => {
  const server = new FakeSteward();
  const log = new Logger('silent');
  const faults = new Faults(log);
  const clock = new ManualClock(0);
  const engine = new Engine({ application: 'orders', clock });
  const recorder = new CallRecorder({ application: 'orders', sample: 1, headers: [] });
  let session: Session;
  let reporter: Reporter;
  /** The reporter's monotonic clock, for acknowledgement timeouts and retries. */
  let now = 0;
  const call = (path: string) => {
    const verdict = engine.enter(INBOUND, 'web', HTTP, 'GET', path);
    if (verdict.kind === 'call') {
      verdict.exit(false);
      recorder.completed(site({ target: path }), false, 200, 0, false, clock.now);
    }
  };
  /** Frames of a type from one socket, in the order received. */
  const from = (socket: Received['socket'], type: string) =>
    server.received.filter((r) => r.socket === socket && r.type === type).map((r) => r.frame);

  beforeAll(async () => {
    await server.start();
    const rules = new RuleSet(engine, new StateStore('/nonexistent', 'orders', log), log);
    session = new Session({
      serverUrl: server.url,
      token: 'stw_test',
      application: 'orders',
      instanceId: 'orders-stats-1',
      run: 'run-stats-test',
      host: '127.0.0.1',
      rules,
      peers: new Peers(),
      ports: () => [],
      log,
      faults,
      onEstablished: () => reporter.resend(),
      onStatsAck: (ack) => reporter.acknowledge(ack.kind, ack.seq, ack.accepted),
    });
    reporter = new Reporter({ engine, recorder, send: (frame) => session.sendReport(frame), faults, now: () => now });
  });

  afterAll(async () => {
    reporter.stop();
    session.stop();
    await server.stop();
  });

  it(`keeps at most ${MAX_BUFFERED_FRAMES} frames before the first connection, then sends them in order after the welcome`, async () => {
    const seconds = MAX_BUFFERED_FRAMES + 10;
    for (let s = 0; s < seconds; s++) {
      clock.now = s * 1_000 + 10;
      call('/a');
      clock.now = (s + 1) * 1_000;
      reporter.tick();
    }
    expect([reporter.stats.buffered, reporter.stats.dropped]).toEqual([MAX_BUFFERED_FRAMES, 10]);
    expect([reporter.records.buffered, reporter.records.dropped]).toEqual([MAX_BUFFERED_FRAMES, 10]);
    session.start();
    const hello = await server.next('hello');
    await until(() => (from(hello.socket, 'records').length === MAX_BUFFERED_FRAMES ? true : undefined), 'the records');
    const stats = from(hello.socket, 'stats');
    expect(stats.map((f) => f.seq)).toEqual(Array.from({ length: MAX_BUFFERED_FRAMES }, (_, i) => i + 11));
    expect(stats.map((f) => f.second)).toEqual(Array.from({ length: MAX_BUFFERED_FRAMES }, (_, i) => i + 10));
    expect(stats.map((f) => f.dropped)).toEqual([10, ...new Array<number>(MAX_BUFFERED_FRAMES - 1).fill(0)]);
    expect(stats[0]).toMatchObject({ entries: [{ resource: 'GET /a', calls: 1, successes: 1, peer: 'web' }] });
    const records = from(hello.socket, 'records');
    expect(records.map((f) => f.seq)).toEqual(Array.from({ length: MAX_BUFFERED_FRAMES }, (_, i) => i + 11));
    expect(records[0]).toMatchObject({ dropped: 10, records: [{ path: '/a', kept: 'sampled', at: 10_010 }] });
    // hello first, then the frames; every frame valid.
    const own = server.received.filter((r) => r.socket === hello.socket);
    expect(own[0]!.type).toBe('hello');
    expect(own.every((r) => r.valid)).toBe(true);
    await until(() => (reporter.stats.buffered + reporter.records.buffered === 0 ? true : undefined), 'the acks');
  });

  it(`sends nothing for a second without calls, and at most ${MAX_ENTRIES_PER_FRAME} entries a frame`, async () => {
    const hello = server.frames('hello').at(-1)!;
    const before = from(hello.socket, 'stats').length;
    clock.now += 1_000;
    reporter.tick();
    recorder.drain();
    const second = Math.floor(clock.now / 1_000);
    for (let i = 0; i < 1_200; i++) call(`/k${i}/items`);
    clock.now += 1_000;
    reporter.tick();
    await until(() => (from(hello.socket, 'stats').length === before + 3 ? true : undefined), 'three stats frames');
    const frames = from(hello.socket, 'stats').slice(before);
    expect(frames.map((f) => [f.seq, f.second, (f.entries as unknown[]).length])).toEqual([
      [611, second, 500],
      [612, second, 500],
      [613, second, 200],
    ]);
    expect(from(hello.socket, 'records').at(-1)).toMatchObject({ seq: 611, dropped: 0 });
  });

  it('keeps frames while the connection is down and sends them, in order, after the hello of the next one', async () => {
    const first = server.frames('hello').at(-1)!;
    first.socket.disconnect(true);
    await until(() => (session.established ? undefined : true), 'the disconnection');
    for (let i = 0; i < 2; i++) {
      call('/b');
      clock.now += 1_000;
      reporter.tick();
    }
    expect(reporter.stats.buffered).toBe(2);
    const next = await server.next('hello', 1);
    await until(() => (from(next.socket, 'stats').length === 2 ? true : undefined), 'the buffered frames');
    expect(from(next.socket, 'stats').map((f) => [f.seq, f.dropped])).toEqual([
      [614, 0],
      [615, 0],
    ]);
    expect(server.received.filter((r) => r.socket === next.socket).map((r) => r.type)).toEqual([
      'hello',
      'stats',
      'stats',
      'records',
      'records',
    ]);
    expect(faults.count).toBe(0);
  });

  it('sends frames not acknowledged when their connection broke again on the next session, before newer ones', async () => {
    await until(() => (reporter.stats.buffered + reporter.records.buffered === 0 ? true : undefined), 'the acks');
    const first = server.frames('hello').at(-1)!;
    const hellos = server.frames('hello').length;
    const before = { stats: from(first.socket, 'stats').length, records: from(first.socket, 'records').length };
    server.statsAck = () => undefined; // written to the socket, never acknowledged
    call('/c');
    clock.now += 1_000;
    reporter.tick();
    await until(() => (from(first.socket, 'records').length > before.records ? true : undefined), 'the frames');
    const lost = { stats: from(first.socket, 'stats').at(-1)!.seq, records: from(first.socket, 'records').at(-1)!.seq };
    expect([reporter.stats.unacknowledged, reporter.records.unacknowledged]).toEqual([1, 1]);
    first.socket.disconnect(true);
    await until(() => (session.established ? undefined : true), 'the disconnection');
    server.statsAck = () => true;
    call('/d');
    clock.now += 1_000;
    reporter.tick();
    const next = await server.next('hello', hellos);
    await until(() => (from(next.socket, 'records').length === 2 ? true : undefined), 'the frames again');
    expect(from(next.socket, 'stats').map((f) => [f.seq, (f.entries as { resource: string }[])[0]!.resource])).toEqual([
      [lost.stats, 'GET /c'],
      [Number(lost.stats) + 1, 'GET /d'],
    ]);
    expect(from(next.socket, 'records').map((f) => f.seq)).toEqual([lost.records, Number(lost.records) + 1]);
    await until(() => (reporter.stats.buffered + reporter.records.buffered === 0 ? true : undefined), 'the acks');
    // Counted once each, however often sent.
    expect(reporter.stats.sent).toBe(Number(lost.stats) + 1 - reporter.stats.dropped);
  });

  it(`sends a refused frame again after ${REFUSED_RETRY_MS} ms, and one not acknowledged in ${ACK_TIMEOUT_MS / 1_000} s`, async () => {
    const hello = server.frames('hello').at(-1)!;
    const times = (type: string, seq: unknown) => from(hello.socket, type).filter((f) => f.seq === seq).length;
    let refusals = 1;
    server.statsAck = (frame) => (frame.type === 'stats' && refusals-- > 0 ? false : true);
    call('/e');
    clock.now += 1_000;
    reporter.tick();
    await until(() => (reporter.records.buffered === 0 && reporter.stats.unacknowledged === 0 ? true : undefined), 'the refusal');
    const refused = from(hello.socket, 'stats').at(-1)!.seq;
    expect([times('stats', refused), reporter.stats.buffered]).toEqual([1, 1]);
    now += REFUSED_RETRY_MS - 1;
    reporter.tick();
    now += 1;
    reporter.tick();
    await until(() => (reporter.stats.buffered === 0 ? true : undefined), 'the frame accepted');
    expect(times('stats', refused)).toBe(2);

    server.statsAck = () => undefined;
    const records = from(hello.socket, 'records').length;
    call('/f');
    clock.now += 1_000;
    reporter.tick();
    await until(() => (from(hello.socket, 'records').length > records ? true : undefined), 'the frames');
    const late = { stats: from(hello.socket, 'stats').at(-1)!.seq, records: from(hello.socket, 'records').at(-1)!.seq };
    now += ACK_TIMEOUT_MS - 1;
    reporter.tick();
    server.statsAck = () => true;
    now += 1;
    reporter.tick();
    await until(() => (reporter.stats.buffered + reporter.records.buffered === 0 ? true : undefined), 'the acks');
    expect([times('stats', late.stats), times('records', late.records)]).toEqual([2, 2]);
    expect(faults.count).toBe(0);
  });
});
