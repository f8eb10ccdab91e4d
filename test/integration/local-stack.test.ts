import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultOptions, LocalStack } from '../../stack/local-stack.js';
import { freePort, SilentServer } from '../support/net.js';

/** Every live process whose command line mentions `needle`. */
async function processesMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if ((await readFile(`/proc/${entry}/cmdline`, 'utf8')).includes(needle)) pids.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

// A second, private stack (own folder, own ports) so the shared one is not disturbed. ZooKeeper
// and FerretDB are enough to exercise the lifecycle; the cached installs are shared.
describe('the local stack lifecycle', () => {
  let stackDir: string;
  let stack: LocalStack;
  const lines: string[] = [];

  beforeAll(async () => {
    stackDir = await mkdtemp(join(tmpdir(), 'steward-stack-test-'));
    const defaults = defaultOptions();
    stack = new LocalStack({
      ...defaults,
      stackDir,
      ports: { ...defaults.ports, zookeeper: await freePort(), mongodb: await freePort() },
      log: (line) => lines.push(line),
    });
  });
  afterAll(async () => {
    await stack.down();
    await rm(stackDir, { recursive: true, force: true });
  });

  it('starts, is harmless when started again, and reports each service up', async () => {
    await stack.up(['zookeeper', 'mongodb']);
    const first = await stack.status(['zookeeper', 'mongodb']);
    expect(first.map((s) => s.state)).toEqual(['up', 'up']);

    lines.length = 0;
    await stack.up(['zookeeper', 'mongodb']);
    expect(lines.filter((l) => l.includes('already running'))).toHaveLength(2);
    const second = await stack.status(['zookeeper', 'mongodb']);
    expect(second.map((s) => s.pid)).toEqual(first.map((s) => s.pid));
    expect(second[0]?.rssMiB).toBeGreaterThan(0);
    expect(second[1]?.details?.version).toEqual(expect.any(String));
  });

  it('keeps its data, logs and pid files under its one folder', async () => {
    expect((await readdir(stackDir)).sort()).toEqual(['data', 'logs', 'run']);
    expect((await readdir(join(stackDir, 'logs'))).sort()).toEqual(['mongodb.log', 'zookeeper.log']);
  });

  it('stops only what it started, and a second stop is harmless', async () => {
    const bystander = await new SilentServer().start();
    try {
      await stack.down(['zookeeper', 'mongodb']);
      expect(await processesMentioning(stackDir)).toEqual([]);
      expect((await stack.status(['zookeeper', 'mongodb'])).map((s) => s.state)).toEqual(['stopped', 'stopped']);
      lines.length = 0;
      await stack.down(['zookeeper', 'mongodb']);
      expect(lines).toEqual(['zookeeper: not running', 'mongodb: not running']);
      // A process of someone else's on a port is neither stopped nor mistaken for ours.
      const squatted = new LocalStack({ ...stack.options, ports: { ...stack.options.ports, zookeeper: bystander.port } });
      expect((await squatted.status(['zookeeper']))[0]?.state).toBe('foreign');
      await expect(squatted.up(['zookeeper'])).rejects.toThrow(/port \d+ is taken by a process this stack did not start/);
      await squatted.down(['zookeeper']);
      expect(bystander.accepted()).toBeGreaterThan(0);
      expect(
        await fetch(`http://127.0.0.1:${bystander.port}`, { signal: AbortSignal.timeout(200) }).catch((e: Error) => e.name),
      ).toBe('TimeoutError');
    } finally {
      await bystander.stop();
    }
  });
});
