import { BadRequestException, Controller, Get, type MessageEvent, Query, Sse } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { map, merge, type Observable, of } from 'rxjs';
import { z } from 'zod';
import { CallRecordSchema, HelloSchema } from '../agent-protocol/messages.js';
import { ZodValidationPipe } from '../common/zod-validation.pipe.js';
import { HOUR, MINUTE, parseStep, type Resolution, resolutionForRange, resolutionForStep, SECOND } from './rollup.js';
import { buildGraph, buildSeries, buildTop } from './stats-views.js';
import { StatsService } from './stats.service.js';

const application = HelloSchema.shape.application;
/** Epoch milliseconds, or an ISO 8601 date-time with an offset. */
const time = z.union([
  z
    .string()
    .regex(/^\d{1,15}$/)
    .transform(Number),
  z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
]);
const direction = z.enum(['inbound', 'outbound']);
const protocol = z.enum(['http', 'dubbo']);
const resolution = z.enum(['auto', '1s', '1m', '1h']).default('auto');
const RESOLUTION_SECONDS = { '1s': SECOND, '1m': MINUTE, '1h': HOUR } as const;
const label = (r: Resolution) => (r === HOUR ? '1h' : r === MINUTE ? '1m' : '1s');

const MAX_POINTS = 10_000;
/** The longest range a 1 s read may cover (facts are kept 2 h anyway). */
const MAX_SECONDS_RANGE = 6 * HOUR;

const range = { from: time.optional(), to: time.optional() };

const SeriesQuery = z.strictObject({
  application,
  ...range,
  step: z.string().default('1m'),
  direction: direction.optional(),
  peer: z.string().max(128).optional(),
  protocol: protocol.optional(),
  resource: z.string().max(600).optional(),
});

const TopQuery = z.strictObject({
  application,
  ...range,
  by: z.enum(['resource', 'peer']).default('resource'),
  metric: z.enum(['qps', 'errors', 'p99']).default('qps'),
  direction: direction.optional(),
  limit: z.coerce.number().int().min(1).max(1_000).default(10),
  resolution,
});

const GraphQuery = z.strictObject({ ...range, resolution });

const RecordsQuery = z.strictObject({
  ...range,
  application: application.optional(),
  caller: z.string().max(128).optional(),
  callee: z.string().max(128).optional(),
  status: z.coerce.number().int().min(0).max(999).optional(),
  minLatencyMs: z.coerce.number().int().min(0).optional(),
  traceId: CallRecordSchema.shape.traceId.optional(),
  outcome: CallRecordSchema.shape.outcome.optional(),
  page: z.coerce.number().int().min(1).max(100_000).default(1),
  pageSize: z.coerce.number().int().min(1).max(1_000).default(50),
});

const LiveQuery = z.strictObject({ application: application.optional() });

/** [from, to) in epoch ms, defaulting to the last hour. */
function msRange(q: { from?: number; to?: number }): { from: number; to: number } {
  const to = q.to ?? Date.now();
  const from = q.from ?? to - HOUR * 1_000;
  if (from >= to) throw new BadRequestException('from must be before to');
  return { from, to };
}

/** The range in seconds, widened to whole windows of the resolution asked for (or the coarsest that tiles it). */
function windowRange(q: { from?: number; to?: number; resolution: keyof typeof RESOLUTION_SECONDS | 'auto' }) {
  const ms = msRange(q);
  const exactFrom = Math.floor(ms.from / 1_000);
  const exactTo = Math.ceil(ms.to / 1_000);
  const r = q.resolution === 'auto' ? resolutionForRange(exactFrom, exactTo) : RESOLUTION_SECONDS[q.resolution];
  const from = Math.floor(exactFrom / r) * r;
  const to = Math.ceil(exactTo / r) * r;
  if (r === SECOND && to - from > MAX_SECONDS_RANGE) {
    throw new BadRequestException(
      'a range read at 1 s resolution may cover at most 6 h: align from/to to minutes or pass resolution',
    );
  }
  return { from, to, resolution: r };
}

const rangeQueries = [
  ApiQuery({ name: 'from', required: false, description: 'epoch ms or ISO 8601; default: to − 1 h' }),
  ApiQuery({ name: 'to', required: false, description: 'epoch ms or ISO 8601 (exclusive); default: now' }),
];
const applyAll =
  (decorators: MethodDecorator[]): MethodDecorator =>
  (target, key, descriptor) => {
    for (const d of decorators) d(target, key, descriptor);
  };

@ApiTags('stats')
@ApiBearerAuth()
@Controller('api/stats')
export class StatsController {
  constructor(private readonly stats: StatsService) {}

  @Get('series')
  @ApiOperation({
    summary: 'Time series of an application: one point per step with counters, qps, error rate and p50/p90/p99.',
    description:
      'The step picks the resolution read: the coarsest of 1h, 1m, 1s that divides it (`5m` reads minute windows, `90s` reads seconds). ' +
      'The range is widened to whole steps. Without a direction filter, inbound and outbound calls add up: pass `direction`.',
  })
  @applyAll(rangeQueries)
  @ApiQuery({ name: 'application', required: true })
  @ApiQuery({ name: 'step', required: false, description: '`<n>s|m|h|d`, e.g. 1s, 10s, 1m, 5m, 1h; default 1m' })
  @ApiQuery({ name: 'direction', required: false, enum: ['inbound', 'outbound'] })
  @ApiQuery({ name: 'peer', required: false, description: "caller (inbound) or callee (outbound); '' for unknown" })
  @ApiQuery({ name: 'protocol', required: false, enum: ['http', 'dubbo'] })
  @ApiQuery({ name: 'resource', required: false, description: '`GET /orders/{id}` or `com.example.Api#method`' })
  async series(@Query(new ZodValidationPipe(SeriesQuery, 'query')) q: z.output<typeof SeriesQuery>) {
    const step = parseStep(q.step);
    if (step === undefined) throw new BadRequestException('step must look like 1s, 10s, 1m, 5m, 1h or 1d');
    const ms = msRange(q);
    const from = Math.floor(ms.from / 1_000 / step) * step;
    const to = Math.ceil(ms.to / 1_000 / step) * step;
    if ((to - from) / step > MAX_POINTS) throw new BadRequestException(`at most ${MAX_POINTS} points: widen the step`);
    const r = resolutionForStep(step);
    if (r === SECOND && to - from > MAX_SECONDS_RANGE)
      throw new BadRequestException('a 1 s resolution series may cover at most 6 h');
    const windows = await this.stats.store.windows(r, from, to, q.application);
    const filter = { direction: q.direction, peer: q.peer, protocol: q.protocol, resource: q.resource };
    return {
      application: q.application,
      from: from * 1_000,
      to: to * 1_000,
      step,
      resolution: label(r),
      points: buildSeries(windows, { from, to, step }, filter),
    };
  }

  @Get('top')
  @ApiOperation({
    summary: 'Top N resources or peers of an application over a range, by qps, errors or p99.',
    description:
      'Reads the coarsest resolution whose windows tile [from, to) (or the one given), widening the range to whole windows.',
  })
  @applyAll(rangeQueries)
  @ApiQuery({ name: 'application', required: true })
  @ApiQuery({ name: 'by', required: false, enum: ['resource', 'peer'] })
  @ApiQuery({ name: 'metric', required: false, enum: ['qps', 'errors', 'p99'] })
  @ApiQuery({ name: 'direction', required: false, enum: ['inbound', 'outbound'] })
  @ApiQuery({ name: 'limit', required: false, type: Number })
  @ApiQuery({ name: 'resolution', required: false, enum: ['auto', '1s', '1m', '1h'] })
  async top(@Query(new ZodValidationPipe(TopQuery, 'query')) q: z.output<typeof TopQuery>) {
    const { from, to, resolution: r } = windowRange(q);
    const windows = await this.stats.store.windows(r, from, to, q.application);
    return {
      application: q.application,
      from: from * 1_000,
      to: to * 1_000,
      resolution: label(r),
      by: q.by,
      metric: q.metric,
      items: buildTop(windows, { by: q.by, metric: q.metric, limit: q.limit, seconds: to - from }, { direction: q.direction }),
    };
  }

  @Get('graph')
  @ApiOperation({
    summary: 'The dependency graph over a range: applications, and caller → callee edges with qps, error rate and p99.',
    description:
      "An edge carries the caller's outbound view when the caller reported any outbound calls to that callee in the range; " +
      "otherwise the callee's inbound view of calls from that (known) caller. Never both: each call counts once.",
  })
  @applyAll(rangeQueries)
  @ApiQuery({ name: 'resolution', required: false, enum: ['auto', '1s', '1m', '1h'] })
  async graph(@Query(new ZodValidationPipe(GraphQuery, 'query')) q: z.output<typeof GraphQuery>) {
    const { from, to, resolution: r } = windowRange(q);
    const windows = await this.stats.store.windows(r, from, to);
    return { from: from * 1_000, to: to * 1_000, resolution: label(r), ...buildGraph(windows, to - from) };
  }

  @Get('records')
  @ApiOperation({ summary: 'Call records (slow, failed, blocked and sampled calls), newest first, one page at a time.' })
  @ApiQuery({ name: 'from', required: false, description: 'epoch ms or ISO 8601 (on the call start)' })
  @ApiQuery({ name: 'to', required: false, description: 'epoch ms or ISO 8601, exclusive' })
  @ApiQuery({ name: 'application', required: false, description: 'the reporting application' })
  @ApiQuery({ name: 'caller', required: false })
  @ApiQuery({ name: 'callee', required: false })
  @ApiQuery({ name: 'status', required: false, type: Number })
  @ApiQuery({ name: 'minLatencyMs', required: false, type: Number })
  @ApiQuery({ name: 'traceId', required: false })
  @ApiQuery({ name: 'outcome', required: false, enum: ['success', 'error', 'limited', 'broken', 'degraded'] })
  @ApiQuery({ name: 'page', required: false, type: Number })
  @ApiQuery({ name: 'pageSize', required: false, type: Number })
  async records(@Query(new ZodValidationPipe(RecordsQuery, 'query')) q: z.output<typeof RecordsQuery>) {
    const { page, pageSize, ...filter } = q;
    const result = await this.stats.store.searchRecords(filter, { offset: (page - 1) * pageSize, limit: pageSize });
    return { page, pageSize, ...result };
  }

  @Sse('live')
  @ApiOperation({
    summary: 'Each second of statistics as the aggregators store it (Server-Sent Events).',
    description:
      'Events of type `second`: one application-second, all instances merged, inbound and outbound summaries. ' +
      'A second is sent once settled (no frame for 1 s), again with a higher `revision` if a late frame changes it. ' +
      'Every aggregator publishes its seconds through Kafka (`LIVE_TOPIC`), so any replica streams every application. ' +
      'A `hello` event first says whether this replica aggregates itself.',
  })
  @ApiQuery({ name: 'application', required: false })
  @ApiOkResponse({ description: 'text/event-stream' })
  live(@Query(new ZodValidationPipe(LiveQuery, 'query')) q: z.output<typeof LiveQuery>): Observable<MessageEvent> {
    return merge(
      of<MessageEvent>({ type: 'hello', data: { aggregating: this.stats.aggregating } }),
      this.stats.liveStream(q.application).pipe(map((second): MessageEvent => ({ type: 'second', data: second }))),
    );
  }
}
