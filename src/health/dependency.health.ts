import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { type HealthIndicatorFunction, HealthIndicatorService } from '@nestjs/terminus';
import type { AppConfig } from '../config/app-config.js';
import { MetricsService } from '../metrics/metrics.service.js';
import {
  probeEureka,
  probeKafka,
  probeMongo,
  probeZookeeper,
  type ProbeDetails,
  type ProbeOptions,
} from './dependency-probes.js';

type Probe = (options: ProbeOptions) => Promise<ProbeDetails>;

/**
 * Readiness of this replica: every configured dependency answers a real request within the
 * configured time. Unconfigured registries are not checked. (Terminus itself answers 503 once
 * shutdown has begun.)
 */
@Injectable()
export class DependencyHealth {
  private readonly probes: [string, Probe][];
  private readonly timeoutMs: number;

  constructor(
    config: ConfigService<AppConfig, true>,
    private readonly indicators: HealthIndicatorService,
    private readonly metrics: MetricsService,
  ) {
    const mongodb = config.get('mongodb', { infer: true });
    const kafka = config.get('kafka', { infer: true });
    const zk = config.get('zookeeper', { infer: true });
    const eureka = config.get('eureka', { infer: true });
    this.timeoutMs = config.get('readinessTimeoutMs', { infer: true });
    this.probes = [
      ['mongodb', (options) => probeMongo(mongodb.uri, options)],
      ['kafka', (options) => probeKafka(kafka.brokers, options, `${kafka.clientId}-readiness`)],
    ];
    if (zk) this.probes.push(['zookeeper', (options) => probeZookeeper(zk.connect, options)]);
    if (eureka) this.probes.push(['eureka', (options) => probeEureka(eureka.urls, options)]);
  }

  checks(): HealthIndicatorFunction[] {
    return this.probes.map(
      ([name, probe]) =>
        () =>
          this.run(name, probe),
    );
  }

  private async run(name: string, probe: Probe) {
    const stopTimer = this.metrics.dependencyProbeDuration.startTimer({ dependency: name });
    const result = await this.indicators
      .check(name)
      .attempt(({ signal }) => probe({ timeoutMs: this.timeoutMs, signal }))
      .withTimeout(this.timeoutMs);
    const up = result[name]?.status === 'up';
    stopTimer({ outcome: up ? 'up' : 'down' });
    this.metrics.dependencyUp.set({ dependency: name }, up ? 1 : 0);
    return result;
  }
}
