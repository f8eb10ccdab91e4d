import { Module } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { TerminusModule } from '@nestjs/terminus';
import type { AppConfig } from '../config/app-config.js';
import { DependencyHealth } from './dependency.health.js';
import { HealthController } from './health.controller.js';

@Module({
  imports: [
    TerminusModule.forRootAsync({
      inject: [ConfigService],
      // On SIGTERM, /readyz turns 503 at once and the process keeps serving for drainMs, so a load
      // balancer stops routing here before connections are closed.
      useFactory: (config: ConfigService<AppConfig, true>) => ({
        logger: false,
        gracefulShutdownTimeoutMs: config.get('shutdown', { infer: true }).drainMs,
      }),
    }),
  ],
  controllers: [HealthController],
  providers: [DependencyHealth],
})
export class HealthModule {}
