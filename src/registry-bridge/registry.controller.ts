import { Controller, Get, NotFoundException, Param, Query, Sse, type MessageEvent } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { Observable } from 'rxjs';
import { z } from 'zod';
import { ZodValidationPipe } from '../common/zod-validation.pipe.js';
import type { ApplicationDetail, CatalogApplication, CatalogInstance, SourceState } from './catalog.js';
import { type BridgeStatus, RegistryBridge } from './registry-bridge.service.js';

const page = {
  page: z.coerce.number().int().min(1).max(1_000_000).default(1),
  pageSize: z.coerce.number().int().min(1).max(1000).default(50),
};
const sourceKind = z.enum(['zookeeper', 'eureka']);
const status = z.enum(['UP', 'DOWN', 'OUT_OF_SERVICE', 'STARTING', 'UNKNOWN', 'DISABLED']);

const ApplicationsQuery = z.strictObject({ q: z.string().max(200).optional(), sourceKind: sourceKind.optional(), ...page });
const InstancesQuery = z.strictObject({
  application: z.string().max(200).optional(),
  source: z.string().max(500).optional(),
  sourceKind: sourceKind.optional(),
  status: status.optional(),
  host: z.string().max(200).optional(),
  kind: z.enum(['dubbo', 'http']).optional(),
  stale: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .optional(),
  ...page,
});
const ChangesQuery = z.strictObject({ since: z.coerce.number().int().min(0).optional() });

export interface Page<T> {
  total: number;
  page: number;
  pageSize: number;
  items: T[];
}

@ApiTags('registry')
@Controller('api/registry')
export class RegistryController {
  constructor(private readonly bridge: RegistryBridge) {}

  @Get('applications')
  @ApiOperation({ summary: 'Applications from every registry, by name; `q` also matches interface names.' })
  @ApiQuery({ name: 'q', required: false })
  @ApiQuery({ name: 'sourceKind', required: false, enum: sourceKind.options })
  @ApiQuery({ name: 'page', required: false, type: Number })
  @ApiQuery({ name: 'pageSize', required: false, type: Number, description: '1-1000, default 50' })
  applications(
    @Query(new ZodValidationPipe(ApplicationsQuery, 'query')) query: z.output<typeof ApplicationsQuery>,
  ): Page<CatalogApplication> {
    const { total, items } = this.bridge.catalog.applications({
      ...(query.q ? { q: query.q } : {}),
      ...(query.sourceKind ? { sourceKind: query.sourceKind } : {}),
      offset: (query.page - 1) * query.pageSize,
      limit: query.pageSize,
    });
    return { total, page: query.page, pageSize: query.pageSize, items };
  }

  @Get('applications/:name')
  @ApiOperation({ summary: 'One application: the Dubbo services it provides and consumes, and its instances.' })
  application(@Param('name') name: string): ApplicationDetail {
    const detail = this.bridge.catalog.application(name.toLowerCase());
    if (!detail) throw new NotFoundException(`no application named "${name}" in any registry`);
    return detail;
  }

  @Get('instances')
  @ApiOperation({ summary: 'Instances, filtered by application, source, status, host, kind or staleness.' })
  @ApiQuery({ name: 'application', required: false })
  @ApiQuery({ name: 'source', required: false, description: 'a source id, e.g. zookeeper:127.0.0.1:2181 or eureka' })
  @ApiQuery({ name: 'sourceKind', required: false, enum: sourceKind.options })
  @ApiQuery({ name: 'status', required: false, enum: status.options })
  @ApiQuery({ name: 'host', required: false })
  @ApiQuery({ name: 'kind', required: false, enum: ['dubbo', 'http'] })
  @ApiQuery({ name: 'stale', required: false, enum: ['true', 'false'] })
  @ApiQuery({ name: 'page', required: false, type: Number })
  @ApiQuery({ name: 'pageSize', required: false, type: Number, description: '1-1000, default 50' })
  instances(
    @Query(new ZodValidationPipe(InstancesQuery, 'query')) query: z.output<typeof InstancesQuery>,
  ): Page<CatalogInstance> {
    const { page: pageNumber, pageSize, application, ...filter } = query;
    const { total, items } = this.bridge.catalog.instances(
      { ...filter, ...(application ? { application: application.toLowerCase() } : {}) },
      { offset: (pageNumber - 1) * pageSize, limit: pageSize },
    );
    return { total, page: pageNumber, pageSize, items };
  }

  @Get('instances/:id')
  @ApiOperation({ summary: 'One instance by id (`application|kind|host:port`, URL-encoded).' })
  instance(@Param('id') id: string): CatalogInstance {
    const instance = this.bridge.catalog.instance(id);
    if (!instance) throw new NotFoundException(`no instance "${id}"`);
    return instance;
  }

  @Get('sources')
  @ApiOperation({
    summary: 'Each registry source: reachable or stale, registrations held, unreadable entries skipped.',
    description:
      "`readBy` names the replica reading the source (this one, or the leader the catalog topic names); `stats` (the source's own counters) come only from the replica reading it.",
  })
  sources(): (SourceState & { readBy?: string; stats?: object })[] {
    const { leader } = this.bridge.status();
    return this.bridge.catalog.sources().map((state) => {
      const source = this.bridge.sources.find((s) => s.id === state.source);
      if (source) return { ...state, readBy: this.bridge.replica, stats: { ...source.stats } };
      return leader ? { ...state, readBy: leader.replica } : state;
    });
  }

  @Get('bridge')
  @ApiOperation({
    summary: "Which replica reads the registries: this replica's role (leader, follower, waiting, standalone) and the leader.",
  })
  bridgeStatus(): BridgeStatus {
    return this.bridge.status();
  }

  @Sse('changes')
  @ApiOperation({
    summary: 'Live catalog changes (Server-Sent Events). Each event is an ordered batch; its id is the last sequence number.',
    description:
      'Reconnect with `?since=<id>` (or the Last-Event-ID header) to resume; an event of type `reset` means the gap is no longer kept and the reader should reload.',
  })
  @ApiOkResponse({ description: 'text/event-stream' })
  changes(@Query(new ZodValidationPipe(ChangesQuery, 'query')) query: z.output<typeof ChangesQuery>): Observable<MessageEvent> {
    return new Observable<MessageEvent>((subscriber) => {
      const since = query.since ?? this.bridge.catalog.lastSeq();
      const backlog = this.bridge.changesSince(since);
      if (backlog === undefined) subscriber.next({ type: 'reset', data: { lastSeq: this.bridge.catalog.lastSeq() } });
      else if (backlog.length > 0) subscriber.next({ id: String(backlog.at(-1)!.seq), type: 'changes', data: backlog });
      else subscriber.next({ type: 'hello', data: { lastSeq: since } });
      const unsubscribe = this.bridge.catalog.subscribe((changes) => {
        const fresh = changes.filter((c) => c.seq > since);
        if (fresh.length > 0) subscriber.next({ id: String(fresh.at(-1)!.seq), type: 'changes', data: fresh });
      });
      return unsubscribe;
    });
  }
}
