import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LATENCY_BUCKETS, latencyBucket, percentileMs } from '../../src/agent-protocol/latency-histogram.js';
import { ensureStatsTopic } from '../../src/stats/stats-aggregator.js';
import { type RunningApp, startApp } from '../support/app.js';
import { stackEnv } from '../support/stack.js';
import { type CallTotals, noCalls, OUTCOMES } from '../support/stats-apps.js';

/**
 * The aggregator against the real Kafka and FerretDB of the local stack: crafted messages in, API
 * totals out, exactly, with redelivered messages, a restart mid-stream and garbage on the topic.
 * Each run has its own topic (so its own consumer group), database and application names.
 */

const run = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const topic = `steward.stats.it.${run}`;
const dbName = `steward_stats_it_${run}`;
const mongoUri = stackEnv.MONGODB_URI.replace(/\/[^/]*$/, `/${dbName}`);
const overrides = { STATS_TOPIC: topic, MONGODB_URI: mongoUri };
const kafka = new Kafka({ clientId: `stats-it-${run}`, brokers: stackEnv.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });

// Data 100 minutes back: well inside the facts horizon (110 min), and in closed windows.
const BASE = Math.floor((Date.now() / 1_000 - 100 * 60) / 60) * 60;

/** The API's outcome counters, and the slow calls. */
type Totals = CallTotals & { slow: number };
const FIELDS = [...OUTCOMES, 'slow'] as const;
const zero = (): Totals => ({ ...noCalls(), slow: 0 });

/** Deterministic frames and what they add up to (per resource, with merged histograms). */
class Workload {
  readonly messages: { key: string; value: string }[] = [];
  readonly total = zero();
  readonly byResource = new Map<string, { totals: Totals; hist: number[]; max: number }>();
  private seed: number;

  constructor(
    readonly application: string,
    instances: number,
    seconds: number,
    seed = 1,
    peers: { direction: 'inbound' | 'outbound'; peer: string }[] = [{ direction: 'inbound', peer: 'web' }],
  ) {
    this.seed = seed;
    for (let i = 0; i < instances; i++) {
      const instanceId = `${application}-i${i}-${run}`;
      for (let s = 1; s <= seconds; s++) {
        const entries = [];
        for (const [r, resource] of ['GET /orders/{id}', 'POST /orders', 'com.example.Stock#reserve'].entries()) {
          const { direction, peer } = peers[(s + r) % peers.length]!;
          const latencies = Array.from({ length: this.rnd(8) }, () => this.rnd(r === 1 ? 2_000 : 120));
          const errors = this.rnd(3) === 0 ? Math.min(1, latencies.length) : 0;
          const limited = this.rnd(5) === 0 ? 2 : 0;
          const calls = latencies.length + limited;
          const hist = new Map<number, number>();
          for (const ms of latencies) hist.set(latencyBucket(ms), (hist.get(latencyBucket(ms)) ?? 0) + 1);
          const e = {
            direction,
            peer,
            protocol: r === 2 ? 'dubbo' : 'http',
            resource,
            calls,
            successes: latencies.length - errors,
            errors,
            limited,
            broken: 0,
            degraded: limited > 0 ? 1 : 0,
            slow: latencies.filter((ms) => ms >= 1_000).length,
            latencySumMs: latencies.reduce((a, b) => a + b, 0),
            latencyMaxMs: Math.max(0, ...latencies),
            histogram: [...hist.entries()].sort((a, b) => a[0] - b[0]),
          };
          if (calls === 0) continue;
          entries.push(e);
          const key = `${direction} ${resource}`;
          let slot = this.byResource.get(key);
          if (!slot)
            this.byResource.set(key, (slot = { totals: zero(), hist: new Array<number>(LATENCY_BUCKETS).fill(0), max: 0 }));
          for (const f of FIELDS) {
            slot.totals[f] += e[f];
            this.total[f] += e[f];
          }
          for (const [b, c] of e.histogram) slot.hist[b]! += c;
          slot.max = Math.max(slot.max, e.latencyMaxMs);
        }
        const frame = { type: 'stats', seq: s, second: BASE + s - 1, dropped: s === 5 ? 2 : 0, entries };
        this.push(instanceId, frame);
      }
    }
  }

  private push(instanceId: string, frame: object) {
    // One agent run per instance here: the instance id is a valid run id.
    const value = { v: 1, application: this.application, instanceId, run: instanceId, receivedAt: Date.now(), frame };
    this.messages.push({ key: this.application, value: JSON.stringify(value) });
  }

  private rnd(n: number): number {
    this.seed = (this.seed * 1103515245 + 12345) % 2 ** 31;
    return Math.floor((this.seed / 2 ** 31) * n);
  }
}

async function produce(producer: Producer, messages: { key: string; value: string }[]) {
  for (let i = 0; i < messages.length; i += 500) await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 500) });
}

type Chunk = { done: boolean; value?: Uint8Array };

async function json<T>(app: RunningApp, path: string): Promise<T> {
  const res = await app.api(path);
  if (res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

interface Series {
  resolution: string;
  points: (Totals & { t: number; p99: number; dropped: number })[];
}

function sum(points: Series['points']): Totals & { dropped: number } {
  const out = { ...zero(), dropped: 0 };
  for (const p of points) {
    for (const f of FIELDS) out[f] += p[f];
    out.dropped += p.dropped;
  }
  return out;
}

const range = (seconds: number) => `from=${BASE * 1_000}&to=${(BASE + seconds) * 1_000}`;

/** Polls until the series of `application` at `step` adds up to `calls` (or the time is up). */
async function waitForCalls(
  app: RunningApp,
  application: string,
  step: string,
  seconds: number,
  calls: number,
  timeoutMs = 90_000,
) {
  const deadline = Date.now() + timeoutMs;
  let last: Totals | undefined;
  while (Date.now() < deadline) {
    const series = await json<Series>(app, `/api/stats/series?application=${application}&${range(seconds)}&step=${step}`);
    last = sum(series.points);
    if (last.calls === calls) return series;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${application} @${step}: ${last?.calls} calls after ${timeoutMs} ms, expected ${calls}`);
}

async function metric(app: RunningApp, outcome: string): Promise<number> {
  const text = await (await app.api('/metrics', { token: null })).text();
  const match = new RegExp(`^steward_stats_messages_total\\{outcome="${outcome}"\\} (\\d+)`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

describe('stats aggregator (real Kafka and FerretDB)', () => {
  let producer: Producer;
  let app: RunningApp | undefined;

  beforeAll(async () => {
    await ensureStatsTopic(kafka, topic);
    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
  });

  afterAll(async () => {
    await app?.close();
    await producer?.disconnect();
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
    const client = new MongoClient(mongoUri);
    await client.db().dropDatabase();
    await client.close();
  });

  it('counts every frame exactly once, also when the same messages are produced twice', async () => {
    const work = new Workload(`st-exact-${run}`, 4, 300, 11);
    const copies = work.messages.slice(0, 400);
    // Duplicates before the aggregator starts (one batch sees both copies) …
    await produce(producer, work.messages);
    await produce(producer, copies);
    const started = Date.now();
    app = await startApp(overrides);
    const series = await waitForCalls(app, work.application, '1m', 300, work.total.calls);
    const elapsed = Date.now() - started;
    console.log(
      `[stats] ${work.messages.length + copies.length} messages consumed, stored and rolled up in ${elapsed} ms ` +
        `(${Math.round(((work.messages.length + copies.length) * 1_000) / elapsed)} messages/s, FerretDB)`,
    );
    expect(series.resolution).toBe('1m');
    expect(sum(series.points)).toEqual({ ...work.total, dropped: 4 * 2 });
    // … and after it consumed them (a redelivery much later).
    await produce(producer, copies);
    await expect.poll(() => metric(app!, 'duplicate'), { timeout: 30_000 }).toBe(800);
    expect(await metric(app, 'counted')).toBe(work.messages.length);

    // Every resolution agrees.
    const seconds = await json<Series>(app, `/api/stats/series?application=${work.application}&${range(300)}&step=1s`);
    expect(seconds.resolution).toBe('1s');
    expect(seconds.points).toHaveLength(300);
    expect(sum(seconds.points)).toEqual({ ...work.total, dropped: 8 });
    const hours = await waitForCalls(app, work.application, '1h', 300, work.total.calls, 30_000);
    expect(hours.resolution).toBe('1h');
    expect(sum(hours.points)).toEqual({ ...work.total, dropped: 8 });

    // Per resource, percentiles from the merged histograms.
    const top = await json<{ resolution: string; items: (Totals & { resource: string; direction: string; p99: number })[] }>(
      app,
      `/api/stats/top?application=${work.application}&${range(300)}&by=resource&metric=qps&limit=10`,
    );
    expect(top.resolution).toBe('1m');
    expect(top.items).toHaveLength(work.byResource.size);
    for (const item of top.items) {
      const want = work.byResource.get(`${item.direction} ${item.resource}`)!;
      for (const f of FIELDS) expect(item[f], `${item.resource} ${f}`).toBe(want.totals[f]);
      expect(item.p99).toBe(percentileMs(want.hist, 99, want.max));
    }
  });

  it('stays exact when the aggregator is restarted mid-stream', async () => {
    const work = new Workload(`st-restart-${run}`, 3, 240, 23);
    const before = await metric(app!, 'counted');
    const chunks: { key: string; value: string }[][] = [];
    for (let i = 0; i < work.messages.length; i += 40) chunks.push(work.messages.slice(i, i + 40));
    const producing = (async () => {
      for (const [i, chunk] of chunks.entries()) {
        await produce(producer, chunk);
        // Some of it again, as a producer retry or a redelivery would.
        if (i % 4 === 0) await produce(producer, chunk.slice(0, 10));
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    // The first server consumes part of the stream, then goes away; the second takes over.
    await expect.poll(() => metric(app!, 'counted'), { timeout: 30_000, interval: 20 }).toBeGreaterThan(before);
    const byFirst = (await metric(app!, 'counted')) - before;
    await app!.close();
    app = await startApp(overrides);
    await producing;
    expect(byFirst).toBeLessThan(work.messages.length);
    const series = await waitForCalls(app, work.application, '1m', 240, work.total.calls);
    expect(sum(series.points)).toEqual({ ...work.total, dropped: 3 * 2 });
    const seconds = await json<Series>(app, `/api/stats/series?application=${work.application}&${range(240)}&step=1s`);
    expect(sum(seconds.points)).toEqual({ ...work.total, dropped: 6 });
  });

  it('stays exact when a second aggregator joins mid-stream and the first leaves (partitions move twice)', async () => {
    const works = Array.from({ length: 6 }, (_, i) => new Workload(`st-move${i}-${run}`, 2, 120, 31 + i));
    const all = works.flatMap((w) => w.messages);
    // Interleaved, so every partition keeps receiving while the group rebalances.
    const order = all.map((m, i) => ({
      m,
      k: (i % works[0]!.messages.length) * works.length + Math.floor(i / works[0]!.messages.length),
    }));
    const stream = order.sort((a, b) => a.k - b.k).map((x) => x.m);
    const before = await metric(app!, 'counted');
    let produced = 0;
    // Paced over ~15 s: a rebalance takes a few heartbeats (3 s each) to go round the group.
    const producing = (async () => {
      for (let i = 0; i < stream.length; i += 12) {
        await produce(producer, stream.slice(i, i + 12));
        produced = i + 12;
        await new Promise((r) => setTimeout(r, 120));
      }
    })();
    await expect.poll(() => metric(app!, 'counted'), { timeout: 30_000, interval: 20 }).toBeGreaterThan(before);
    const second = await startApp(overrides);
    try {
      // The first leaves once the second has been given partitions and the stream is still going.
      await expect.poll(() => metric(second, 'counted'), { timeout: 30_000, interval: 50 }).toBeGreaterThan(0);
      expect(produced).toBeLessThan(stream.length);
      await app!.close();
    } catch (error) {
      await second.close();
      throw error;
    }
    app = second;
    await producing;
    for (const work of works) {
      const minutes = await waitForCalls(app, work.application, '1m', 120, work.total.calls);
      expect(sum(minutes.points), work.application).toEqual({ ...work.total, dropped: 2 * 2 });
      const hours = await waitForCalls(app, work.application, '1h', 120, work.total.calls, 30_000);
      expect(sum(hours.points), work.application).toEqual({ ...work.total, dropped: 4 });
    }
  });

  it('skips malformed messages (counted) and leaves the good ones unaffected', async () => {
    const work = new Workload(`st-garbage-${run}`, 2, 60, 5);
    const before = await metric(app!, 'malformed');
    const bad = [
      'not json',
      JSON.stringify({ v: 2, application: work.application }),
      JSON.stringify({ v: 1, application: work.application, instanceId: 'x', receivedAt: 1, frame: { type: 'stats', seq: 0 } }),
      JSON.stringify({ ...JSON.parse(work.messages[0]!.value), application: 'Not A Name' }),
    ].map((value) => ({ key: work.application, value }));
    const mixed = work.messages.flatMap((m, i) => (i % 30 === 0 ? [bad[(i / 30) % bad.length]!, m] : [m]));
    await produce(producer, mixed);
    const series = await waitForCalls(app!, work.application, '1m', 60, work.total.calls);
    expect(sum(series.points)).toEqual({ ...work.total, dropped: 4 });
    expect((await metric(app!, 'malformed')) - before).toBe(mixed.length - work.messages.length);
  });

  it('keeps up with a burst (figure for docs/stats.md)', async () => {
    const work = new Workload(`st-burst-${run}`, 20, 300, 41);
    const before = await metric(app!, 'counted');
    const started = Date.now();
    await produce(producer, work.messages);
    const produced = Date.now();
    await expect.poll(() => metric(app!, 'counted'), { timeout: 120_000, interval: 100 }).toBe(before + work.messages.length);
    const stored = Date.now();
    await waitForCalls(app!, work.application, '1m', 300, work.total.calls, 120_000);
    const rolled = Date.now();
    console.log(
      `[stats] burst of ${work.messages.length} frames (${work.messages.length * 3} entries): produced in ${produced - started} ms, ` +
        `stored in ${stored - started} ms (${Math.round((work.messages.length * 1_000) / (stored - started))} messages/s), ` +
        `rolled up after ${rolled - started} ms (FerretDB)`,
    );
  });

  it('answers the dependency graph with one view per edge', async () => {
    const web = new Workload(`st-web-${run}`, 1, 60, 3, [{ direction: 'outbound', peer: `st-api-${run}` }]);
    const api = new Workload(`st-api-${run}`, 1, 60, 4, [
      { direction: 'inbound', peer: `st-web-${run}` },
      { direction: 'inbound', peer: `st-batch-${run}` },
    ]);
    await produce(producer, [...web.messages, ...api.messages]);
    await waitForCalls(app!, web.application, '1m', 60, web.total.calls);
    await waitForCalls(app!, api.application, '1m', 60, api.total.calls);
    const graph = await json<{
      edges: { caller: string; callee: string; calls: number; source: string }[];
      nodes: { application: string; reporting: boolean }[];
    }>(app!, `/api/stats/graph?${range(60)}`);
    const mine = graph.edges.filter((e) => e.caller.endsWith(run) || e.callee.endsWith(run));
    expect(mine.find((e) => e.caller === web.application && e.callee === api.application)).toMatchObject({
      calls: web.total.calls,
      source: 'outbound',
    });
    const batch = mine.find((e) => e.caller === `st-batch-${run}`);
    expect(batch).toMatchObject({ callee: api.application, source: 'inbound' });
    expect(graph.nodes.find((n) => n.application === `st-batch-${run}`)).toMatchObject({ reporting: false });
  });

  it('finds call records, newest first, paged', async () => {
    const application = `st-records-${run}`;
    const at = Date.now() - 60_000;
    const records = Array.from({ length: 30 }, (_, i) => ({
      at: at + i,
      traceId: i === 7 ? 'feedfacecafebeef' : `${(i + 1).toString(16).padStart(16, '0')}`,
      direction: 'inbound',
      caller: i % 2 ? 'web' : 'batch',
      callee: application,
      protocol: 'http',
      method: 'GET',
      path: `/orders/${i}`,
      status: i % 3 === 0 ? 500 : 200,
      latencyMs: i * 10,
      outcome: i % 3 === 0 ? 'error' : 'success',
      kept: i % 3 === 0 ? 'error' : 'sampled',
    }));
    const frame = (seq: number, slice: object[]) =>
      JSON.stringify({
        v: 1,
        application,
        instanceId: `rec-${run}`,
        run: `rec-${run}`,
        receivedAt: Date.now(),
        frame: { type: 'records', seq, dropped: 0, records: slice },
      });
    const messages = [frame(1, records.slice(0, 20)), frame(2, records.slice(20))].map((value) => ({ key: application, value }));
    await produce(producer, [...messages, ...messages]);
    type Page = { items: { id: string; at: number; traceId: string; latencyMs: number }[]; hasMore: boolean };
    await expect
      .poll(async () => (await json<Page>(app!, `/api/stats/records?application=${application}&pageSize=100`)).items.length, {
        timeout: 30_000,
      })
      .toBe(30);
    const first = await json<Page>(app!, `/api/stats/records?application=${application}&pageSize=10`);
    expect(first.hasMore).toBe(true);
    expect(first.items.map((r) => r.at)).toEqual(
      records
        .slice(20)
        .map((r) => r.at)
        .reverse(),
    );
    const third = await json<Page>(app!, `/api/stats/records?application=${application}&pageSize=10&page=3`);
    expect(third.hasMore).toBe(false);
    expect(third.items.at(-1)!.id).toBe(`rec-${run}:r:1:0`);
    const slowErrors = await json<Page>(
      app!,
      `/api/stats/records?application=${application}&outcome=error&minLatencyMs=150&caller=web`,
    );
    expect(slowErrors.items.map((r) => r.latencyMs)).toEqual([270, 210, 150]);
    const byTrace = await json<Page>(app!, `/api/stats/records?traceId=feedfacecafebeef&application=${application}`);
    expect(byTrace.items).toHaveLength(1);
    const bad = await app!.api(`/api/stats/records?traceId=XYZ`);
    expect(bad.status).toBe(400);
  });

  it('streams each aggregated second live (SSE)', async () => {
    const application = `st-live-${run}`;
    const controller = new AbortController();
    const res = await app!.api(`/api/stats/live?application=${application}`, { signal: controller.signal });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const second = Math.floor(Date.now() / 1_000);
    const value = (instanceId: string) =>
      JSON.stringify({
        v: 1,
        application,
        instanceId,
        run: `run-${instanceId}`,
        receivedAt: Date.now(),
        frame: {
          type: 'stats',
          seq: 1,
          second,
          dropped: 0,
          entries: [
            {
              direction: 'inbound',
              peer: '',
              protocol: 'http',
              resource: 'GET /',
              calls: 5,
              successes: 5,
              errors: 0,
              limited: 0,
              broken: 0,
              degraded: 0,
              slow: 0,
              latencySumMs: 50,
              latencyMaxMs: 10,
              histogram: [[10, 5]],
            },
          ],
        },
      });
    await produce(
      producer,
      [`a-${run}`, `b-${run}`].map((id) => ({ key: application, value: value(id) })),
    );
    let text = '';
    const deadline = Date.now() + 30_000;
    while (!text.includes('event: second') && Date.now() < deadline) {
      const timeout = new Promise<Chunk>((r) => setTimeout(() => r({ done: true, value: undefined }), deadline - Date.now()));
      const read: Chunk = await Promise.race([reader.read(), timeout]);
      if (read.done) break;
      text += new TextDecoder().decode(read.value);
    }
    controller.abort();
    expect(text).toContain('event: hello');
    const data = text
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => JSON.parse(l.slice(6)) as { t?: number; instances?: number; inbound?: { calls: number } })
      .find((d) => d.t !== undefined);
    expect(data).toMatchObject({ t: second * 1_000, instances: 2, inbound: { calls: 10 } });
  });

  it('validates query parameters', async () => {
    expect((await app!.api('/api/stats/series?application=Bad Name')).status).toBe(400);
    expect((await app!.api('/api/stats/series?application=x&step=7x')).status).toBe(400);
    expect((await app!.api('/api/stats/series?application=x&from=2000&to=1000')).status).toBe(400);
    expect((await app!.api('/api/stats/top?application=x&metric=nope')).status).toBe(400);
    expect((await app!.api('/api/stats/series?application=x', { token: null })).status).toBe(401);
    const doc = await json<{ paths: Record<string, unknown> }>(app!, '/docs/openapi.json');
    for (const path of ['series', 'top', 'graph', 'records', 'live']) expect(doc.paths).toHaveProperty(`/api/stats/${path}`);
  });
});
