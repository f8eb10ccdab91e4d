import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { deadline } from '../../src/common/deadline.js';

const run = promisify(execFile);

/** Runs an ES module body in a fresh Node with `gc()` exposed; returns its last stdout line. */
async function underGcPressure(body: string): Promise<string> {
  const script = `
    const pressure = setInterval(() => { const junk = []; for (let i = 0; i < 1e5; i++) junk.push({ i }); gc(); }, 10);
    try { ${body} } finally { clearInterval(pressure); }`;
  const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: process.cwd(),
    timeout: 15_000,
  });
  return stdout.trim().split('\n').at(-1) ?? '';
}

describe('deadline', () => {
  it('fires on time while the garbage collector runs (AbortSignal.any + timeout does not on Node 20)', async () => {
    const line = await underGcPressure(`
      const { deadline } = await import('./src/common/deadline.ts');
      const started = Date.now();
      const { signal } = deadline(200);
      const reason = await new Promise((resolve) => {
        signal.addEventListener('abort', () => resolve(signal.reason));
        setTimeout(() => resolve(null), 3000);
      });
      console.log(JSON.stringify({ name: reason?.name ?? null, ms: Date.now() - started }));`);
    const { name, ms } = JSON.parse(line) as { name: string | null; ms: number };
    expect(name).toBe('TimeoutError');
    expect(ms).toBeGreaterThanOrEqual(195);
    expect(ms).toBeLessThan(2_000);
  });

  it('bounds a Eureka request (with a caller signal, as the source passes one) to a server that never answers, under GC pressure', async () => {
    const line = await underGcPressure(`
      const { createServer } = await import('node:net');
      const { EurekaHttpClient } = await import('./src/registry-bridge/eureka/eureka-http.ts');
      const silent = createServer((socket) => socket.resume());
      await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
      const client = new EurekaHttpClient({ urls: ['http://127.0.0.1:' + silent.address().port + '/eureka'], requestTimeoutMs: 300 });
      const outcome = await Promise.race([
        client.fetchApps(new AbortController().signal).then(() => 'answered', (error) => error.message),
        new Promise((resolve) => setTimeout(() => resolve('still waiting after 5 s'), 5000).unref()),
      ]);
      silent.close();
      console.log(outcome);`);
    expect(line).toMatch(/every Eureka URL failed: .*timed out/);
  });

  it("aborts with the outer signal's reason, and clear() releases the timer and the listener", async () => {
    const outer = new AbortController();
    const first = deadline(10_000, outer.signal);
    outer.abort(new Error('stopping'));
    expect(first.signal.aborted).toBe(true);
    expect((first.signal.reason as Error).message).toBe('stopping');
    first.clear();

    const second = new AbortController();
    const cleared = deadline(50, second.signal);
    cleared.clear();
    second.abort(new Error('after clear'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(cleared.signal.aborted).toBe(false);

    expect(deadline(10, AbortSignal.abort(new Error('already'))).signal.reason).toEqual(new Error('already'));
  });
});
