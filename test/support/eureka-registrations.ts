import { randomBytes } from 'node:crypto';

/**
 * Synthetic instances registered in the real Eureka server with its REST API, as a Spring Cloud
 * client would (`POST /eureka/apps/{APP}` with an InstanceInfo in JSON). The server is shared by
 * every test run on the machine: names are unique per run, and `cleanup()` cancels what was made.
 */

export interface TestInstance {
  app: string;
  instanceId: string;
  ip: string;
  port: number;
  status?: 'UP' | 'DOWN' | 'STARTING' | 'OUT_OF_SERVICE' | 'UNKNOWN';
  metadata?: Record<string, string>;
  /** The lease Eureka grants without renewals (default 90 s, as Spring's clients ask). */
  leaseSeconds?: number;
}

/** An application name no other run uses, upper-cased as Eureka stores it. */
export function uniqueAppName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`.toUpperCase();
}

/** The InstanceInfo body a Spring Cloud client sends (Eureka's Jackson codec reads it). */
export function instanceInfo(instance: TestInstance): { instance: Record<string, unknown> } {
  const vip = instance.app.toLowerCase();
  return {
    instance: {
      instanceId: instance.instanceId,
      hostName: instance.ip,
      app: instance.app,
      ipAddr: instance.ip,
      status: instance.status ?? 'UP',
      port: { $: instance.port, '@enabled': 'true' },
      securePort: { $: 443, '@enabled': 'false' },
      dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
      vipAddress: vip,
      secureVipAddress: vip,
      homePageUrl: `http://${instance.ip}:${instance.port}/`,
      statusPageUrl: `http://${instance.ip}:${instance.port}/actuator/info`,
      healthCheckUrl: `http://${instance.ip}:${instance.port}/actuator/health`,
      leaseInfo: { renewalIntervalInSecs: 30, durationInSecs: instance.leaseSeconds ?? 90 },
      metadata: instance.metadata ?? {},
    },
  };
}

export class EurekaTestRegistry {
  private readonly made = new Map<string, TestInstance>();
  private readonly base: string;

  constructor(baseUrl: string) {
    this.base = baseUrl.replace(/\/+$/, '');
  }

  /** Registers (204 expected) and remembers the instance for `cleanup()`. */
  async register(instance: TestInstance): Promise<void> {
    const res = await fetch(`${this.base}/apps/${instance.app}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(instanceInfo(instance)),
    });
    await res.body?.cancel();
    if (res.status !== 204) throw new Error(`register ${instance.app}/${instance.instanceId}: HTTP ${res.status}`);
    this.made.set(`${instance.app}/${instance.instanceId}`, instance);
  }

  /** Cancels the lease (`DELETE /apps/{APP}/{id}`), as a client shutting down does. */
  async cancel(app: string, instanceId: string): Promise<void> {
    const res = await fetch(`${this.base}/apps/${app}/${encodeURIComponent(instanceId)}`, { method: 'DELETE' });
    await res.body?.cancel();
    if (res.status !== 200 && res.status !== 404) throw new Error(`cancel ${app}/${instanceId}: HTTP ${res.status}`);
    this.made.delete(`${app}/${instanceId}`);
  }

  async cleanup(): Promise<void> {
    for (const instance of [...this.made.values()]) await this.cancel(instance.app, instance.instanceId);
  }
}
