import { beforeAll, describe, expect, it } from 'vitest';
import { probeEureka, probeKafka, probeMongo, probeZookeeper } from '../../src/health/dependency-probes.js';
import { freePort, SilentServer } from '../support/net.js';

// Real sockets, no stack: a closed port and a server that accepts but never answers.
describe('dependency probes against broken peers', () => {
  let closed = 0;
  beforeAll(async () => {
    closed = await freePort();
  });

  const probes = {
    zookeeper: (port: number, timeoutMs: number) => probeZookeeper(`127.0.0.1:${port}`, { timeoutMs }),
    kafka: (port: number, timeoutMs: number) => probeKafka([`127.0.0.1:${port}`], { timeoutMs }),
    eureka: (port: number, timeoutMs: number) => probeEureka([`http://127.0.0.1:${port}/eureka`], { timeoutMs }),
    mongodb: (port: number, timeoutMs: number) => probeMongo(`mongodb://127.0.0.1:${port}/`, { timeoutMs }),
  };

  it.each(Object.entries(probes))(
    '%s: a hung peer fails the probe in time, and the connection is released',
    async (_name, probe) => {
      const silent = await new SilentServer().start();
      try {
        const started = Date.now();
        await expect(probe(silent.port, 400)).rejects.toThrow();
        expect(Date.now() - started).toBeLessThan(2_000);
        expect(silent.accepted()).toBeGreaterThan(0);
        // The probe's client must not leave its socket behind.
        const deadline = Date.now() + 1_000;
        while (silent.open() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        expect(silent.open()).toBe(0);
      } finally {
        await silent.stop();
      }
    },
  );

  it.each(Object.entries(probes))('%s: a closed port fails the probe', async (_name, probe) => {
    await expect(probe(closed, 1_500)).rejects.toThrow();
  });

  it('an outer signal stops a probe before its own timeout', async () => {
    const silent = await new SilentServer().start();
    try {
      const started = Date.now();
      await expect(
        probeKafka([`127.0.0.1:${silent.port}`], { timeoutMs: 10_000, signal: AbortSignal.timeout(300) }),
      ).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      await silent.stop();
    }
  });

  it('eureka: names every URL that failed', async () => {
    const a = `http://127.0.0.1:${closed}/eureka`;
    const b = `http://127.0.0.1:${closed}/eureka-b/`;
    await expect(probeEureka([a, b], { timeoutMs: 2_000 })).rejects.toThrow(
      new RegExp(`${closed}/eureka/apps: .*; .*${closed}/eureka-b/apps: `),
    );
  });
});
