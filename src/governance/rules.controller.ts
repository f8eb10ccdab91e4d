import {
  BadRequestException,
  Body,
  Controller,
  Delete,
  Get,
  Headers,
  HttpCode,
  Param,
  Post,
  Put,
  Query,
  Res,
} from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiHeader, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { z } from 'zod';
import { ruleJsonSchema } from '../agent-protocol/rules.js';
import { CurrentPrincipal, RequireRole, type Principal } from '../auth/principal.js';
import { ZodValidationPipe } from '../common/zod-validation.pipe.js';
import { type CommitResult, RuleStore, type Who } from './rule-store.service.js';

const Application = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/, 'an application name: letters, digits, . _ - (at most 200)')
  .transform((name) => name.toLowerCase());
const RuleWrite = z.strictObject({ rule: z.unknown(), reason: z.string().max(1000).default('') });
const Validate = z.strictObject({ rule: z.unknown(), id: z.string().max(100).optional() });
const Rollback = z.strictObject({ toRevision: z.number().int().min(0), reason: z.string().max(1000).default('') });
const Reason = z.strictObject({ reason: z.string().max(1000).default('') });
const Paging = z.strictObject({
  page: z.coerce.number().int().min(1).default(1),
  pageSize: z.coerce.number().int().min(1).max(1000).default(100),
});
const Search = Paging.extend({
  application: Application.optional(),
  kind: z.enum(['limit', 'breaker', 'degrade']).optional(),
  target: z.string().min(1).max(1000).optional(),
  enabled: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .optional(),
});

/** `If-Match: "7"` (or `7`) names the revision a write is based on; a stale one gets 409. */
function expectedRevision(header: string | undefined): number | undefined {
  if (header === undefined || header === '') return undefined;
  const match = /^(?:W\/)?"?(\d{1,15})"?$/.exec(header.trim());
  if (!match) throw new BadRequestException('If-Match must be a revision number, e.g. "7"');
  return Number(match[1]);
}

const who = (principal: Principal, reason: string): Who => ({
  name: principal.name,
  role: principal.role,
  from: principal.from,
  reason,
});

/** The write's outcome, with the revision also as ETag for the next If-Match. */
function answer(res: Response, result: CommitResult, ruleId?: string) {
  res.setHeader('ETag', `"${result.revision}"`);
  return {
    application: result.application,
    revision: result.revision,
    changed: result.changed,
    ...(ruleId ? { rule: result.rules.find((r) => r.id === ruleId) ?? null } : {}),
    changes: result.changes,
    conflicts: result.conflicts,
  };
}

@ApiTags('rules')
@ApiBearerAuth()
@Controller('api')
export class RulesController {
  constructor(private readonly store: RuleStore) {}

  @Get('rules')
  @ApiOperation({ summary: 'Rules across applications, by application, kind, target and enabled state.' })
  @ApiQuery({ name: 'application', required: false })
  @ApiQuery({ name: 'target', required: false, description: 'a target key or its beginning, e.g. orders|outbound|stock' })
  @ApiQuery({ name: 'kind', required: false, enum: ['limit', 'breaker', 'degrade'] })
  @ApiQuery({ name: 'enabled', required: false, enum: ['true', 'false'] })
  @ApiQuery({ name: 'page', required: false, type: Number })
  @ApiQuery({ name: 'pageSize', required: false, type: Number })
  async search(@Query(new ZodValidationPipe(Search, 'query')) query: z.output<typeof Search>) {
    const { page, pageSize, ...filter } = query;
    const { total, items } = await this.store.search(filter, { offset: (page - 1) * pageSize, limit: pageSize });
    return { total, page, pageSize, items };
  }

  @Get('applications/:application/rules')
  @ApiOperation({ summary: 'An application’s rule set at its current revision (also the ETag), with conflicts.' })
  async current(
    @Param('application', new ZodValidationPipe(Application, 'params')) application: string,
    @Res({ passthrough: true }) res: Response,
  ) {
    const view = await this.store.current(application);
    res.setHeader('ETag', `"${view.revision}"`);
    return view;
  }

  @Post('applications/:application/rules')
  @ApiOperation({ summary: 'Create a rule: a new revision. `If-Match` with the current revision guards against lost updates.' })
  @ApiHeader({ name: 'If-Match', required: false, description: 'the revision this write is based on, e.g. "7"' })
  @ApiBody({
    schema: { type: 'object', properties: { rule: ruleJsonSchema() as object, reason: { type: 'string' } }, required: ['rule'] },
  })
  async create(
    @Param('application', new ZodValidationPipe(Application, 'params')) application: string,
    @Body(new ZodValidationPipe(RuleWrite)) body: z.output<typeof RuleWrite>,
    @Headers('if-match') ifMatch: string | undefined,
    @CurrentPrincipal() principal: Principal,
    @Res({ passthrough: true }) res: Response,
  ) {
    const result = await this.store.create(application, body.rule, who(principal, body.reason), expectedRevision(ifMatch));
    return answer(res, result, result.changes[0]?.ruleId);
  }

  @Post('applications/:application/rules/validate')
  @HttpCode(200)
  // A dry run writes nothing: a viewer may check a rule (docs/governance.md).
  @RequireRole('viewer')
  @ApiOperation({ summary: 'Dry run: validate a rule and report the conflicts it would cause; nothing is written.' })
  validate(
    @Param('application', new ZodValidationPipe(Application, 'params')) application: string,
    @Body(new ZodValidationPipe(Validate)) body: z.output<typeof Validate>,
  ) {
    return this.store.validate(application, body.rule, body.id);
  }

  @Post('applications/:application/rules/rollback')
  @HttpCode(200)
  @ApiOperation({ summary: 'Restore the rule set of an earlier revision, as a new revision.' })
  @ApiHeader({ name: 'If-Match', required: false })
  async rollback(
    @Param('application', new ZodValidationPipe(Application, 'params')) application: string,
    @Body(new ZodValidationPipe(Rollback)) body: z.output<typeof Rollback>,
    @Headers('if-match') ifMatch: string | undefined,
    @CurrentPrincipal() principal: Principal,
    @Res({ passthrough: true }) res: Response,
  ) {
    return answer(
      res,
      await this.store.rollback(application, body.toRevision, who(principal, body.reason), expectedRevision(ifMatch)),
    );
  }

  @Get('applications/:application/rules/history')
  @ApiOperation({ summary: 'The application’s revisions, newest first, each with every rule’s before and after.' })
  async history(
    @Param('application', new ZodValidationPipe(Application, 'params')) application: string,
    @Query(new ZodValidationPipe(Paging, 'query')) query: z.output<typeof Paging>,
  ) {
    const { total, items } = await this.store.history(application, {
      offset: (query.page - 1) * query.pageSize,
      limit: query.pageSize,
    });
    return { total, page: query.page, pageSize: query.pageSize, items };
  }

  @Get('applications/:application/rules/:id/history')
  @ApiOperation({ summary: 'One rule’s history: the revisions that changed it.' })
  async ruleHistory(
    @Param('application', new ZodValidationPipe(Application, 'params')) application: string,
    @Param('id') id: string,
    @Query(new ZodValidationPipe(Paging, 'query')) query: z.output<typeof Paging>,
  ) {
    const { total, items } = await this.store.history(
      application,
      { offset: (query.page - 1) * query.pageSize, limit: query.pageSize },
      id,
    );
    return { total, page: query.page, pageSize: query.pageSize, items };
  }

  @Put('applications/:application/rules/:id')
  @ApiOperation({ summary: 'Replace a rule (enable/disable included): a new revision.' })
  @ApiHeader({ name: 'If-Match', required: false })
  @ApiBody({
    schema: { type: 'object', properties: { rule: ruleJsonSchema() as object, reason: { type: 'string' } }, required: ['rule'] },
  })
  async update(
    @Param('application', new ZodValidationPipe(Application, 'params')) application: string,
    @Param('id') id: string,
    @Body(new ZodValidationPipe(RuleWrite)) body: z.output<typeof RuleWrite>,
    @Headers('if-match') ifMatch: string | undefined,
    @CurrentPrincipal() principal: Principal,
    @Res({ passthrough: true }) res: Response,
  ) {
    return answer(
      res,
      await this.store.update(application, id, body.rule, who(principal, body.reason), expectedRevision(ifMatch)),
      id,
    );
  }

  @Delete('applications/:application/rules/:id')
  @ApiOperation({ summary: 'Delete a rule: a new revision.' })
  @ApiHeader({ name: 'If-Match', required: false })
  @ApiQuery({ name: 'reason', required: false })
  async remove(
    @Param('application', new ZodValidationPipe(Application, 'params')) application: string,
    @Param('id') id: string,
    @Query(new ZodValidationPipe(Reason, 'query')) query: z.output<typeof Reason>,
    @Headers('if-match') ifMatch: string | undefined,
    @CurrentPrincipal() principal: Principal,
    @Res({ passthrough: true }) res: Response,
  ) {
    return answer(res, await this.store.remove(application, id, who(principal, query.reason), expectedRevision(ifMatch)));
  }
}
