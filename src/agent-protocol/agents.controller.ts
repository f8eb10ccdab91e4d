import { Controller, Get, Param, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiParam, ApiQuery, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { ZodValidationPipe } from '../common/zod-validation.pipe.js';
import { AgentDirectory } from './agent-directory.js';
import { AgentHub } from './agent-hub.js';
import type { ClusterAgentRecord } from './cluster-agent-directory.js';

const Application = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'an application name: letters, digits, . _ - (at most 128)')
  .transform((name) => name.toLowerCase());

const AcksQuery = z.strictObject({
  instances: z
    .enum(['true', 'false'])
    .default('true')
    .transform((v) => v === 'true'),
});

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

function view(record: ClusterAgentRecord, revision: number) {
  return {
    instanceId: record.instanceId,
    replica: record.replica,
    application: record.application,
    host: record.host,
    ports: record.ports,
    remoteAddress: record.remoteAddress,
    agent: record.agent,
    protocol: record.protocol,
    capabilities: record.capabilities,
    connected: record.connected,
    connectedSince: iso(record.connectedAt),
    disconnectedAt: iso(record.disconnectedAt),
    lastHeartbeatAt: iso(record.lastHeartbeatAt),
    appliedRevision: record.appliedRevision,
    appliedAt: iso(record.appliedAt),
    sync: AgentDirectory.syncState(record, revision),
    lastNack: record.lastNack ? { ...record.lastNack, at: iso(record.lastNack.at) } : null,
    clockSkewMs: record.clockSkewMs ?? null,
    breakers: Object.fromEntries(Object.entries(record.breakers).map(([id, b]) => [id, { state: b.state, at: iso(b.at) }])),
  };
}

@ApiTags('agents')
@ApiBearerAuth()
@Controller('api')
export class AgentsController {
  constructor(private readonly hub: AgentHub) {}

  @Get('agents')
  @ApiOperation({
    summary:
      'Applications with connected agents on any replica, with counts; and the replicas this one hears of, with their connected agents.',
  })
  async applications() {
    const names = this.hub.cluster.applications();
    const items = await Promise.all(
      names.map(async (application) => {
        const revision = await this.hub.revisionOf(application);
        const { acknowledged, nacked, pending, connected } = this.hub.cluster.revisionStatus(application, revision, false);
        return { application, revision, connected, acknowledged, nacked, pending };
      }),
    );
    const replicas = this.hub.cluster.replicas().map((r) => ({ ...r, lastSeenAt: iso(r.lastSeenAt) }));
    return { total: items.length, items, replicas };
  }

  @Get('applications/:application/agents')
  @ApiOperation({
    summary:
      "An application's agents on every replica: the replica holding the session, connected since, last heartbeat, applied revision, last NACK, breaker states, and whether each enforces the current revision.",
  })
  @ApiParam({ name: 'application' })
  async list(@Param('application', new ZodValidationPipe(Application, 'params')) application: string) {
    const revision = await this.hub.revisionOf(application);
    const records = this.hub.cluster.list(application);
    const agents = records.map((r) => view(r, revision));
    const status = this.hub.cluster.revisionStatus(application, revision, false);
    return {
      application,
      revision,
      summary: {
        connected: status.connected,
        inSync: status.acknowledged,
        pending: status.pending,
        nacked: status.nacked,
        disconnected: agents.length - status.connected,
      },
      agents,
    };
  }

  @Get('applications/:application/revisions/:revision/acks')
  @ApiOperation({
    summary:
      'How many connected instances, on every replica, enforce a revision (or a later one), refused it, or have not answered.',
  })
  @ApiParam({ name: 'application' })
  @ApiParam({ name: 'revision', type: Number })
  @ApiQuery({ name: 'instances', required: false, description: 'false: counts only (cheap to poll with thousands of agents)' })
  acks(
    @Param('application', new ZodValidationPipe(Application, 'params')) application: string,
    @Param('revision', new ZodValidationPipe(z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER), 'params'))
    revision: number,
    @Query(new ZodValidationPipe(AcksQuery, 'query')) query: z.output<typeof AcksQuery>,
  ) {
    return this.hub.cluster.revisionStatus(application, revision, query.instances);
  }
}
