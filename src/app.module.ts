import { type DynamicModule, Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { LoggerModule } from 'nestjs-pino';
import type { AppConfig } from './config/app-config.js';
import { HealthModule } from './health/health.module.js';
import { MetricsModule } from './metrics/metrics.module.js';

/** Paths probed every few seconds by orchestrators and scrapers: not worth a log line each. */
const QUIET_PATHS = new Set(['/livez', '/readyz', '/metrics']);

@Module({})
export class AppModule {
  /** The configuration is parsed before Nest starts (see main.ts) and handed in whole. */
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true, load: [() => config] }),
        LoggerModule.forRoot({
          pinoHttp: {
            level: config.logLevel,
            base: { service: 'steward' },
            redact: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-token"]'],
            autoLogging: { ignore: (req) => QUIET_PATHS.has((req.url ?? '').split('?')[0] ?? '') },
          },
        }),
        MetricsModule,
        HealthModule,
      ],
    };
  }
}
