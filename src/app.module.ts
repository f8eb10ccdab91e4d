import { type DynamicModule, Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { MongooseModule } from '@nestjs/mongoose';
import type { Connection } from 'mongoose';
import { LoggerModule } from 'nestjs-pino';
import { keepConnecting } from './common/mongo-connection.js';
import type { AppConfig } from './config/app-config.js';
import { AgentProtocolModule } from './agent-protocol/agent-protocol.module.js';
import { AuditModule } from './audit/audit.module.js';
import { AuthModule } from './auth/auth.module.js';
import { DashboardModule } from './dashboard/dashboard.module.js';
import { GovernanceModule } from './governance/governance.module.js';
import { HealthModule } from './health/health.module.js';
import { MetricsModule } from './metrics/metrics.module.js';
import { RegistryBridgeModule } from './registry-bridge/registry-bridge.module.js';
import { StatsModule } from './stats/stats.module.js';

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
        // Lazy and retried: the server starts (and reports /readyz red) while the database is
        // away; queries wait for it (mongoose buffers them up to 10 s) instead.
        MongooseModule.forRoot(config.mongodb.uri, {
          lazyConnection: true,
          serverSelectionTimeoutMS: 5_000,
          connectionFactory: (connection: Connection) =>
            keepConnecting(connection, config.mongodb.uri, { serverSelectionTimeoutMS: 5_000 }),
        }),
        MetricsModule,
        HealthModule,
        AuditModule,
        AuthModule,
        RegistryBridgeModule,
        GovernanceModule,
        AgentProtocolModule,
        StatsModule,
        DashboardModule,
      ],
    };
  }
}
