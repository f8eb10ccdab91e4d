import { Body, Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { CurrentPrincipal, type Principal } from '../../auth/principal.js';
import { ZodValidationPipe } from '../../common/zod-validation.pipe.js';
import type { Page } from '../registry.controller.js';
import type { NativeControl } from './native-control.model.js';
import { type Actor, NativeControls } from './native-controls.service.js';

const CreateControl = z.discriminatedUnion('action', [
  z.strictObject({
    action: z.literal('isolate'),
    instanceId: z.string().min(1).max(600),
    reason: z.string().max(1000).default(''),
  }),
  z.strictObject({
    action: z.literal('weight'),
    instanceId: z.string().min(1).max(600),
    weight: z.number().int().min(0).max(10_000),
    reason: z.string().max(1000).default(''),
  }),
]);
const RevertControl = z.strictObject({ reason: z.string().max(1000).default('') }).default({ reason: '' });
const ListControls = z.strictObject({
  application: z.string().max(200).optional(),
  instanceId: z.string().max(600).optional(),
  state: z.enum(['pending', 'active', 'reverted', 'superseded', 'failed']).optional(),
  page: z.coerce.number().int().min(1).default(1),
  pageSize: z.coerce.number().int().min(1).max(500).default(50),
});

const actorOf = (who: Principal, reason: string): Actor => ({ actor: who.name, role: who.role, from: who.from, reason });

@ApiTags('registry')
@ApiBearerAuth()
@Controller('api/registry/controls')
export class NativeControlsController {
  constructor(private readonly controls: NativeControls) {}

  @Post()
  @ApiOperation({
    summary: 'Isolate an instance, or set a Dubbo provider’s weight, in its own registry (for apps without an agent).',
    description:
      'Dubbo: a configurator entry in /dubbo/config/dubbo/<app>.configurators (`disabled: true` or `weight: N` for the address). Eureka: the OUT_OF_SERVICE status override.',
  })
  @ApiBody({ schema: z.toJSONSchema(CreateControl, { io: 'input' }) as object })
  create(
    @Body(new ZodValidationPipe(CreateControl)) body: z.output<typeof CreateControl>,
    @CurrentPrincipal() principal: Principal,
  ): Promise<NativeControl> {
    const who = actorOf(principal, body.reason);
    return body.action === 'isolate'
      ? this.controls.isolate(body.instanceId, who)
      : this.controls.weight(body.instanceId, body.weight, who);
  }

  @Post(':id/revert')
  @HttpCode(200)
  @ApiOperation({ summary: 'Undo a control: restore the instance or its weight.' })
  @ApiBody({ required: false, schema: z.toJSONSchema(RevertControl, { io: 'input' }) as object })
  revert(
    @Param('id') id: string,
    @Body(new ZodValidationPipe(RevertControl)) body: z.output<typeof RevertControl>,
    @CurrentPrincipal() principal: Principal,
  ) {
    return this.controls.revert(id, actorOf(principal, body.reason));
  }

  @Get()
  @ApiOperation({ summary: 'The record of controls, newest first.' })
  @ApiQuery({ name: 'application', required: false })
  @ApiQuery({ name: 'instanceId', required: false })
  @ApiQuery({ name: 'state', required: false, enum: ['pending', 'active', 'reverted', 'superseded', 'failed'] })
  @ApiQuery({ name: 'page', required: false, type: Number })
  @ApiQuery({ name: 'pageSize', required: false, type: Number })
  async list(
    @Query(new ZodValidationPipe(ListControls, 'query')) query: z.output<typeof ListControls>,
  ): Promise<Page<NativeControl>> {
    const { page, pageSize, ...filter } = query;
    const [items, total] = await this.controls.list(filter, { offset: (page - 1) * pageSize, limit: pageSize });
    return { total, page, pageSize, items };
  }

  @Get(':id')
  @ApiOperation({ summary: 'One control.' })
  get(@Param('id') id: string): Promise<NativeControl> {
    return this.controls.get(id);
  }
}
