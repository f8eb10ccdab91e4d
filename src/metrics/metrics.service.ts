import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The process's Prometheus registry: one per app, so tests can run several apps in one process. */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  readonly httpRequestDuration = new Histogram({
    name: 'steward_http_request_duration_seconds',
    help: 'HTTP requests served, by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly dependencyUp = new Gauge({
    name: 'steward_dependency_up',
    help: 'Whether the last readiness probe of a dependency succeeded (1) or failed (0).',
    labelNames: ['dependency'] as const,
    registers: [this.registry],
  });

  readonly dependencyProbeDuration = new Histogram({
    name: 'steward_dependency_probe_duration_seconds',
    help: 'Time taken by readiness probes, by dependency and outcome.',
    labelNames: ['dependency', 'outcome'] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
