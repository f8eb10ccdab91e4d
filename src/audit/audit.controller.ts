import { Controller, Get, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { ZodValidationPipe } from '../common/zod-validation.pipe.js';
import { AuditLog } from './audit-log.service.js';

const AuditQuery = z.strictObject({
  actor: z.string().max(200).optional(),
  action: z.string().max(100).optional(),
  application: z.string().max(200).optional(),
  outcome: z.enum(['ok', 'denied', 'rejected', 'failed']).optional(),
  from: z.coerce.date().optional(),
  to: z.coerce.date().optional(),
  page: z.coerce.number().int().min(1).default(1),
  pageSize: z.coerce.number().int().min(1).max(500).default(50),
});

@ApiTags('audit')
@ApiBearerAuth()
@Controller('api/audit')
export class AuditController {
  constructor(private readonly audit: AuditLog) {}

  @Get()
  @ApiOperation({ summary: 'The audit log, newest first: every change and every refused attempt.' })
  @ApiQuery({ name: 'actor', required: false })
  @ApiQuery({ name: 'action', required: false, description: 'e.g. rule.create, rule.rollback, control.isolate, auth.denied' })
  @ApiQuery({ name: 'application', required: false })
  @ApiQuery({ name: 'outcome', required: false, enum: ['ok', 'denied', 'rejected', 'failed'] })
  @ApiQuery({ name: 'from', required: false, description: 'ISO time' })
  @ApiQuery({ name: 'to', required: false, description: 'ISO time' })
  @ApiQuery({ name: 'page', required: false, type: Number })
  @ApiQuery({ name: 'pageSize', required: false, type: Number })
  async find(@Query(new ZodValidationPipe(AuditQuery, 'query')) query: z.output<typeof AuditQuery>) {
    const { page, pageSize, from, to, ...filter } = query;
    const { total, items } = await this.audit.find({
      ...filter,
      ...(from ? { from } : {}),
      ...(to ? { to } : {}),
      offset: (page - 1) * pageSize,
      limit: pageSize,
    });
    return { total, page, pageSize, items };
  }
}
