/**
 * Registry data for the benchmarks (bench/registry-bridge.ts, bench/cluster.ts): Dubbo provider
 * znodes written into the local stack's real ZooKeeper under a root of the run's own, and Eureka
 * instances registered in its real Eureka server under application names of the run's own; and
 * their removal.
 */
import type { EurekaTestRegistry, TestInstance } from '../test/support/eureka-registrations.js';
import { javaFormEncode, type ZkClient } from '../test/support/zk.js';

/** Registrations per Dubbo service and per Eureka application. */
export const PER_SERVICE = 50;

/** Runs `work` on every item, `concurrency` at a time. */
export async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

/** The address of the i-th synthetic instance (distinct for i < 16 million). */
export const host = (i: number) => `10.${100 + Math.floor(i / 65_000)}.${Math.floor(i / 250) % 250}.${i % 250}`;
export const iface = (s: number) => `com.bench.svc${s}.Service${s}`;
/** The znode name of provider i of service s, as Dubbo writes it (URL-encoded provider URL). */
export const providerName = (s: number, i: number) =>
  javaFormEncode(
    `dubbo://${host(i)}:20880/${iface(s)}?anyhost=true&application=bench-app-${Math.floor(s / 2)}&dubbo=2.0.2&dynamic=true&interface=${iface(s)}&methods=get,list,put&pid=${i}&release=3.3.5&side=provider&timestamp=${Date.now()}`,
  );

/** Writes `providers` provider znodes under `/<root>` (Dubbo 2.7 layout), PER_SERVICE per service; returns the services. */
export async function seedZooKeeper(zk: ZkClient, root: string, providers: number): Promise<number> {
  const services = Math.ceil(providers / PER_SERVICE);
  for (let s = 0; s < services; s++) await zk.mkdirp(`/${root}/${iface(s)}/providers`);
  const znodes = Array.from({ length: providers }, (_, i) => ({ s: i % services, i }));
  await pool(znodes, 128, ({ s, i }) =>
    zk.create(`/${root}/${iface(s)}/providers/${providerName(s, i)}`, undefined, 'persistent', false),
  );
  return services;
}

/** Removes `/<root>` and everything under it. */
export async function removeZooKeeperRoot(zk: ZkClient, root: string): Promise<void> {
  const services = await zk.children(`/${root}`);
  await pool(services, 16, (service) => zk.removeTree(`/${root}/${service}`));
  await zk.removeTree(`/${root}`);
}

/** `count` Eureka instances of applications `<prefix>-WEB-<n>`, PER_SERVICE each, with hour-long leases (no renewals needed). */
export function eurekaInstances(prefix: string, count: number): TestInstance[] {
  const apps = Math.ceil(count / PER_SERVICE);
  return Array.from({ length: count }, (_, i) => ({
    app: `${prefix}-WEB-${i % apps}`.toUpperCase(),
    instanceId: `${host(i)}:bench-web-${i % apps}:8080`,
    ip: host(i),
    port: 8080,
    leaseSeconds: 3_600,
  }));
}

export async function seedEureka(eureka: EurekaTestRegistry, instances: readonly TestInstance[]): Promise<void> {
  await pool(instances, 32, (instance) => eureka.register(instance));
}

/** Cancels the instances' leases, several at a time (the registry's own cleanup goes one by one). */
export async function removeEurekaInstances(eureka: EurekaTestRegistry, instances: readonly TestInstance[]): Promise<void> {
  await pool(instances, 32, (instance) => eureka.cancel(instance.app, instance.instanceId));
}
