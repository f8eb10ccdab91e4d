import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { Public } from '../auth/principal.js';
import { DependencyHealth } from './dependency.health.js';

@ApiTags('operations')
@Public()
@Controller()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly dependencies: DependencyHealth,
  ) {}

  @Get('livez')
  @HealthCheck()
  @ApiOperation({ summary: 'Liveness: the process serves HTTP. Checks no dependency.' })
  livez() {
    return this.health.check([]);
  }

  @Get('readyz')
  @HealthCheck()
  @ApiOperation({ summary: 'Readiness: every configured dependency answered a real request in time (503 otherwise).' })
  readyz() {
    return this.health.check(this.dependencies.checks());
  }
}
