/**
 * The statistics end-to-end probe of bench/stats-ingest.ts and bench/cluster.ts: one agent of an
 * application of its own sends, at each second's turn, the `stats` frame of the second that just
 * ended, with a call count no other second has; the API's series of that application is polled
 * every `pollMs` until the second shows. Delay = the response that showed it − the end of the
 * second the calls were made in (one machine, one clock).
 *
 * Two readings, each its own polling loop: `1s`, the second's own point in the 1 s series (the
 * frame as stored) showing exactly its count; `1m`, the second's minute in the 1 min series (the
 * rolled-up window) counting at least every probe call up to and including that second (the probe's
 * frames travel in order on one session and one partition, so that means this second is in).
 */
import { io, type Socket } from 'socket.io-client';
import { hello } from './agent-socket.js';
import type { timedApi } from './report.js';
import { newRun, sleep, wallNow } from './stats-load.js';

export type ProbeStep = '1s' | '1m';

export interface ProbeReading {
  /** ms from the end of each probed second to the response that showed it. */
  delays: number[];
  /** Seconds not seen within the timeout. */
  missing: number;
  /** Round trip of each polling query, ms. */
  queryMs: number[];
}

export interface ProbeResult {
  readings: Partial<Record<ProbeStep, ProbeReading>>;
  /** Probe frames the server refused (each sent again after 1 s). */
  refused: number;
}

const STEP_SECONDS: Record<ProbeStep, number> = { '1s': 1, '1m': 60 };

export class StatsProbe {
  private sending = false;

  private constructor(
    private readonly socket: Socket,
    readonly application: string,
  ) {}

  /** Connects the probe agent to `url` (a server's `/agents`) and waits for its session. */
  static async connect(url: string, token: string, application: string): Promise<StatsProbe> {
    const socket = io(`${url}/agents`, { forceNew: true, transports: ['websocket'], auth: { token } });
    const welcomed = new Promise<void>((resolve, reject) => {
      socket.once('welcome', () => resolve());
      socket.once('error', (frame: { message?: string }) =>
        reject(new Error(`the probe's session was refused: ${frame.message}`)),
      );
      setTimeout(() => reject(new Error('the probe got no welcome in 20 s')), 20_000).unref();
    });
    socket.on('connect', () =>
      socket.emit(
        'hello',
        hello({ application, instanceId: `${application}-i0`, run: newRun(), capabilities: [], heldRevision: 0 }),
      ),
    );
    await welcomed;
    return new StatsProbe(socket, application);
  }

  /**
   * Probes up to `samples` seconds (fewer if `stop` is called), reading the series at each of
   * `steps` through `api`; a second not seen within `timeoutMs` after it ended counts as missing.
   */
  async run(
    api: ReturnType<typeof timedApi>,
    samples: number,
    pollMs: number,
    timeoutMs: number,
    steps: readonly ProbeStep[] = ['1s'],
  ): Promise<ProbeResult> {
    /** Per step, the seconds not seen yet and the count their point must show. */
    const pending = new Map(steps.map((step) => [step, new Map<number, number>()]));
    const result: ProbeResult = { readings: {}, refused: 0 };
    // A refused frame goes again after 1 s, as an agent sends it (docs/agent-protocol.md).
    const frames = new Map<number, object>();
    this.socket.on('stats-ack', (ack: { seq: number; accepted: boolean }) => {
      const frame = frames.get(ack.seq);
      if (ack.accepted || !frame) return void frames.delete(ack.seq);
      result.refused += 1;
      setTimeout(() => this.socket.emit('stats', frame), 1_000);
    });
    this.sending = true;
    const sender = (async () => {
      const minuteCalls = new Map<number, number>();
      for (let k = 0; k < samples && this.sending; k++) {
        await sleep(1_000 - (Date.now() % 1_000) + 2);
        const second = Math.floor(Date.now() / 1_000) - 1;
        const calls = 1_000 + k;
        const minute = Math.floor(second / 60);
        minuteCalls.set(minute, (minuteCalls.get(minute) ?? 0) + calls);
        pending.get('1s')?.set(second, calls);
        pending.get('1m')?.set(second, minuteCalls.get(minute)!);
        const frame = {
          type: 'stats',
          seq: k + 1,
          second,
          dropped: 0,
          entries: [
            {
              direction: 'inbound',
              peer: '',
              protocol: 'http',
              resource: 'GET /probe',
              calls,
              successes: calls,
              errors: 0,
              limited: 0,
              broken: 0,
              degraded: 0,
              slow: 0,
              latencySumMs: 5 * calls,
              latencyMaxMs: 5,
              histogram: [[5, calls]],
            },
          ],
        };
        frames.set(k + 1, frame);
        this.socket.emit('stats', frame);
      }
      this.sending = false;
    })();
    const poll = async (step: ProbeStep, waiting: Map<number, number>) => {
      const reading: ProbeReading = { delays: [], missing: 0, queryMs: [] };
      result.readings[step] = reading;
      const size = STEP_SECONDS[step];
      while (this.sending || waiting.size > 0) {
        if (waiting.size > 0) {
          const seconds = [...waiting.keys()];
          const from = Math.floor(Math.min(...seconds) / size) * size * 1_000;
          const to = (Math.floor(Math.max(...seconds) / size) + 1) * size * 1_000;
          const started = wallNow();
          const series = await api<{ points: { t: number; calls: number }[] }>(
            `/api/stats/series?application=${this.application}&from=${from}&to=${to}&step=${step}`,
          );
          const at = wallNow();
          reading.queryMs.push(at - started);
          const calls = new Map(series.body.points.map((point) => [point.t / 1_000, point.calls]));
          for (const [second, expected] of waiting) {
            const shown = calls.get(Math.floor(second / size) * size);
            if (shown !== undefined && (step === '1s' ? shown === expected : shown >= expected)) {
              reading.delays.push(at - (second + 1) * 1_000);
              waiting.delete(second);
            } else if (at - (second + 1) * 1_000 > timeoutMs) {
              reading.missing += 1;
              waiting.delete(second);
            }
          }
        }
        await sleep(pollMs);
      }
    };
    await Promise.all([sender, ...[...pending].map(([step, waiting]) => poll(step, waiting))]);
    return result;
  }

  /** Ends `run` after the second being sent; the seconds sent are still waited for. */
  stop(): void {
    this.sending = false;
  }

  close(): void {
    this.socket.disconnect();
  }
}
