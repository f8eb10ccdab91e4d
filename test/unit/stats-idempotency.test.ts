import type { KafkaMessage } from 'kafkajs';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LiveSeconds } from '../../src/stats/live-seconds.js';
import type { FactDoc } from '../../src/stats/rollup.js';
import { StatsAggregator } from '../../src/stats/stats-aggregator.js';
import { factId, parseStatsMessage, recordId } from '../../src/stats/stats-message.js';
import {
  type CallRecordDoc,
  DEFAULT_RETENTION,
  LATE_MARGIN,
  type StatsStore,
  type WriteStatus,
} from '../../src/stats/stats-store.js';
import type { HourDoc, MinuteDoc } from '../../src/stats/window-book.js';

const NOW = 1_800_000_000_000;
const SECOND = NOW / 1_000 - 600;

/** The store's write side in memory, with the same duplicate-key behaviour as a unique _id. */
class MemoryStore {
  readonly retention = DEFAULT_RETENTION;
  readonly facts = new Map<string, FactDoc>();
  readonly records = new Map<string, CallRecordDoc>();
  readonly minutes = new Map<string, MinuteDoc>();
  readonly hours = new Map<string, HourDoc>();
  readonly reads: string[] = [];
  failNext = false;

  lateBefore(nowMs: number) {
    return Math.floor(nowMs / 1_000) - (this.retention.facts - LATE_MARGIN);
  }
  private insert<T extends { _id: string }>(into: Map<string, T>, docs: T[]): Promise<WriteStatus[]> {
    if (this.failNext) {
      this.failNext = false;
      // Half of the chunk lands, then the database goes away.
      for (const d of docs.slice(0, docs.length / 2)) if (!into.has(d._id)) into.set(d._id, d);
      return Promise.reject(new Error('connection reset'));
    }
    return Promise.resolve(
      docs.map((d) => {
        if (into.has(d._id)) return 'duplicate';
        into.set(d._id, d);
        return 'inserted';
      }),
    );
  }
  insertFacts(docs: FactDoc[]) {
    return this.insert(this.facts, docs);
  }
  insertRecords(docs: CallRecordDoc[]) {
    return this.insert(this.records, docs);
  }
  loadMinutes(ids: readonly string[]) {
    this.reads.push(...ids);
    return Promise.resolve(new Map(ids.filter((id) => this.minutes.has(id)).map((id) => [id, this.minutes.get(id)!])));
  }
  loadHours(ids: readonly string[]) {
    this.reads.push(...ids);
    return Promise.resolve(new Map(ids.filter((id) => this.hours.has(id)).map((id) => [id, this.hours.get(id)!])));
  }
  writeMinutes(docs: MinuteDoc[]) {
    for (const doc of docs) this.minutes.set(doc._id, doc);
  }
}

function message(value: unknown, offset = '0'): KafkaMessage {
  const out: KafkaMessage = {
    key: null,
    value: Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
    timestamp: '0',
    attributes: 0,
    offset,
    headers: {},
  };
  return out;
}

const entry = {
  direction: 'inbound',
  peer: 'web',
  protocol: 'http',
  resource: 'GET /orders/{id}',
  calls: 3,
  successes: 3,
  errors: 0,
  limited: 0,
  broken: 0,
  degraded: 0,
  slow: 0,
  latencySumMs: 30,
  latencyMaxMs: 12,
  histogram: [[10, 3]],
};

const stats = (instanceId: string, seq: number, second = SECOND) => ({
  v: 1,
  application: 'orders',
  instanceId,
  run: `run-${instanceId}-0001`,
  receivedAt: NOW,
  frame: { type: 'stats', seq, second, dropped: 0, entries: [entry] },
});

const records = (instanceId: string, seq: number, n: number) => ({
  v: 1,
  application: 'orders',
  instanceId,
  run: `run-${instanceId}-0001`,
  receivedAt: NOW,
  frame: {
    type: 'records',
    seq,
    dropped: 0,
    records: Array.from({ length: n }, (_, i) => ({
      at: NOW - 1_000 + i,
      traceId: '0123456789abcdef',
      direction: 'inbound',
      caller: 'web',
      callee: 'orders',
      protocol: 'http',
      method: 'GET',
      path: '/orders/1',
      status: 500,
      latencyMs: 12,
      outcome: 'error',
      kept: 'error',
    })),
  },
});

function setup() {
  const store = new MemoryStore();
  const live = new LiveSeconds(0, 0);
  const seen: unknown[] = [];
  live.stream().subscribe((s) => seen.push(s));
  const registry = new Registry();
  const aggregator = new StatsAggregator({
    brokers: ['127.0.0.1:1'],
    clientId: 't',
    topic: 't',
    store: store as unknown as StatsStore,
    live,
    registry,
    logger: { info: () => undefined, warn: () => undefined, error: () => undefined },
  });
  return { store, live, seen, registry, aggregator };
}

describe('idempotency keys', () => {
  it('names facts and records by agent run, sequence (and position)', () => {
    expect(factId('Zr4-run_01', 7)).toBe('Zr4-run_01:s:7');
    expect(recordId('Zr4-run_01', 7, 3)).toBe('Zr4-run_01:r:7:3');
  });
});

describe('parseStatsMessage', () => {
  it('accepts the contract and refuses anything else with a reason', () => {
    expect(parseStatsMessage(JSON.stringify(stats('i', 1))).ok).toBe(true);
    expect(parseStatsMessage(JSON.stringify({ ...stats('i', 1), extra: true })).ok).toBe(true);
    expect(parseStatsMessage('{nope')).toEqual({ ok: false, reason: 'not JSON' });
    expect(parseStatsMessage(null)).toEqual({ ok: false, reason: 'empty message' });
    const bad = parseStatsMessage(JSON.stringify({ ...stats('i', 1), v: 2 }));
    expect(bad.ok).toBe(false);
    const badFrame = stats('i', 1);
    (badFrame.frame.entries[0] as Record<string, unknown>) = { ...entry, calls: -1 };
    const refused = parseStatsMessage(JSON.stringify(badFrame));
    expect(refused.ok === false && refused.reason).toContain('frame.entries.0.calls');
    expect(parseStatsMessage(JSON.stringify({ ...stats('i', 1), frame: { type: 'hello' } })).ok).toBe(false);
  });
});

describe('StatsAggregator.process', () => {
  it('counts each (run, seq) once, however often it is delivered', async () => {
    const { store, aggregator, live, seen } = setup();
    const batch = [message(stats('a', 1)), message(stats('a', 2)), message(stats('b', 1)), message(records('a', 1, 3))];
    expect(await aggregator.process(batch, 0, NOW)).toEqual(['counted', 'counted', 'counted', 'counted']);
    expect(await aggregator.process(batch, 0, NOW)).toEqual(['duplicate', 'duplicate', 'duplicate', 'duplicate']);
    expect(store.facts.size).toBe(3);
    expect(store.records.size).toBe(3);
    const minute = SECOND - (SECOND % 60);
    expect(aggregator.book.minutes.get(`orders:${minute}`)!.toDoc(NOW)).toMatchObject({
      facts: 3,
      instances: 2,
      frames: ['run-a-0001:1-2', 'run-b-0001:1-1'],
    });
    expect(aggregator.book.hours.get(`orders:${SECOND - (SECOND % 3_600)}`)!.toDoc(NOW)).toMatchObject({ facts: 3 });
    live.tick(NOW + 1);
    // The live view saw the three new facts once: 9 calls in one second.
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ application: 'orders', instances: 2, inbound: { calls: 9 } });
  });

  it('counts a restarted instance (same instance id, new run) afresh', async () => {
    const { store, aggregator } = setup();
    const restarted = { ...stats('pod-1', 1), run: 'run-pod-1-0002' };
    expect(await aggregator.process([message(stats('pod-1', 1)), message(restarted)], 0, NOW)).toEqual(['counted', 'counted']);
    expect([...store.facts.keys()]).toEqual(['run-pod-1-0001:s:1', 'run-pod-1-0002:s:1']);
  });

  it('counts a frame repeated inside one chunk once', async () => {
    const { store, aggregator } = setup();
    expect(await aggregator.process([message(stats('a', 1)), message(stats('a', 1))], 0, NOW)).toEqual(['counted', 'duplicate']);
    expect(store.facts.size).toBe(1);
  });

  it('skips malformed and late messages without disturbing the others', async () => {
    const { store, aggregator, registry } = setup();
    const late = stats('a', 9, Math.floor(NOW / 1_000) - DEFAULT_RETENTION.facts);
    const out = await aggregator.process([message('garbage'), message(stats('a', 1)), message(late), message({ v: 1 })], 0, NOW);
    expect(out).toEqual(['malformed', 'counted', 'late', 'malformed']);
    expect([...store.facts.keys()]).toEqual(['run-a-0001:s:1']);
    const metric = await registry.getSingleMetricAsString('steward_stats_messages_total');
    expect(metric).toContain('steward_stats_messages_total{outcome="malformed"} 2');
    expect(metric).toContain('steward_stats_messages_total{outcome="late"} 1');
  });

  it('a chunk retried after a partial write counts nothing twice', async () => {
    const { store, aggregator } = setup();
    const batch = [1, 2, 3, 4].map((seq) => message(stats('a', seq)));
    store.failNext = true;
    await expect(aggregator.process(batch, 0, NOW)).rejects.toThrow('connection reset');
    expect(store.facts.size).toBe(2);
    // The failed attempt merged nothing; the facts it stored are simply there already.
    expect(await aggregator.process(batch, 0, NOW)).toEqual(['counted', 'counted', 'counted', 'counted']);
    expect(store.facts.size).toBe(4);
    expect(aggregator.totals).toMatchObject({ counted: 4, duplicate: 0 });
  });

  it('an aggregator that takes over recognises the frames of the windows written before', async () => {
    const first = setup();
    const batch = [1, 2, 3].map((seq) => message(stats('a', seq)));
    await first.aggregator.process(batch, 0, NOW);
    first.store.writeMinutes([...first.aggregator.book.minutes.values()].map((w) => w.toDoc(NOW)));

    const second = setup();
    Object.assign(second.store, { minutes: first.store.minutes, facts: first.store.facts });
    const redelivered = [...batch, message(stats('a', 4))];
    expect(await second.aggregator.process(redelivered, 0, NOW)).toEqual(['duplicate', 'duplicate', 'duplicate', 'counted']);
    const minute = SECOND - (SECOND % 60);
    // The minute, then the hour, each read by _id; no hour stored (the first aggregator never
    // flushed it), so the hour disagrees with the minute and is rebuilt from all its minutes.
    const hour = SECOND - (SECOND % 3_600);
    const others: string[] = [];
    for (let m = hour; m < hour + 3_600; m += 60) if (m !== minute) others.push(`orders:${m}`);
    expect(second.store.reads).toEqual([`orders:${minute}`, `orders:${hour}`, ...others]);
    expect(second.aggregator.book.hours.get(`orders:${SECOND - (SECOND % 3_600)}`)!.toDoc(NOW).facts).toBe(4);
  });
});
