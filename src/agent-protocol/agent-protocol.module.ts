import { Module } from '@nestjs/common';
import { GovernanceModule } from '../governance/governance.module.js';
import { RegistryBridgeModule } from '../registry-bridge/registry-bridge.module.js';
import { StatsModule } from '../stats/stats.module.js';
import { AgentDirectoryExchange } from './agent-directory-exchange.js';
import { AgentHub } from './agent-hub.js';
import { AgentsController } from './agents.controller.js';

/** Agents' sessions over socket.io (`/agents`), rule push, and the REST view of every agent's state. */
@Module({
  imports: [GovernanceModule, RegistryBridgeModule, StatsModule],
  controllers: [AgentsController],
  providers: [AgentHub, AgentDirectoryExchange],
  exports: [AgentHub],
})
export class AgentProtocolModule {}
