import { Module } from '@nestjs/common';
import { AgentProtocolModule } from '../agent-protocol/agent-protocol.module.js';
import { GovernanceModule } from '../governance/governance.module.js';
import { RegistryBridgeModule } from '../registry-bridge/registry-bridge.module.js';
import { StatsModule } from '../stats/stats.module.js';
import { DashboardGateway } from './dashboard.gateway.js';
import { MeController } from './me.controller.js';

/**
 * The dashboard's server side (docs/dashboard.md): `GET /api/me` and the live socket.io namespace
 * `/dashboard`. Its static files are served by `dashboardUi` (static-ui.ts), mounted in app.ts
 * ahead of every route.
 */
@Module({
  imports: [AgentProtocolModule, RegistryBridgeModule, GovernanceModule, StatsModule],
  controllers: [MeController],
  providers: [DashboardGateway],
})
export class DashboardModule {}
