import { Body, Controller, Delete, Get, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { AuditLog } from '../audit/audit-log.service.js';
import { ZodValidationPipe } from '../common/zod-validation.pipe.js';
import { ROLES } from './api-token.model.js';
import { ApiTokens } from './api-tokens.service.js';
import { CurrentPrincipal, type Principal, RequireRole } from './principal.js';

const CreateToken = z
  .strictObject({
    name: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[A-Za-z0-9._@-]+$/, 'letters, digits and . _ @ - only'),
    role: z.enum(ROLES),
    applications: z
      .array(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,127}$/, 'an application name'))
      .min(1)
      .max(1_000)
      .optional()
      .describe('Agent tokens only: the applications whose agents may use the token (absent: any).'),
  })
  .refine((t) => t.applications === undefined || t.role === 'agent', {
    path: ['applications'],
    message: 'only agent tokens are scoped to applications',
  });

@ApiTags('auth')
@ApiBearerAuth()
@RequireRole('admin')
@Controller('api/tokens')
export class TokensController {
  constructor(
    private readonly tokens: ApiTokens,
    private readonly audit: AuditLog,
  ) {}

  @Post()
  @ApiOperation({ summary: 'Create an API token (the secret is shown once).' })
  @ApiBody({ schema: z.toJSONSchema(CreateToken) as object })
  async create(@Body(new ZodValidationPipe(CreateToken)) body: z.output<typeof CreateToken>, @CurrentPrincipal() who: Principal) {
    const issued = await this.tokens.issue(body.name, body.role, who.name, body.applications);
    await this.audit.record({
      actor: who.name,
      role: who.role,
      from: who.from,
      action: 'token.create',
      outcome: 'ok',
      status: 201,
      target: issued.record._id,
      after: issued.record,
    });
    return issued;
  }

  @Get()
  @ApiOperation({ summary: 'List tokens (never their secrets).' })
  list() {
    return this.tokens.list();
  }

  @Delete(':id')
  @ApiOperation({ summary: 'Revoke a token (other replicas stop accepting it within 30 s).' })
  async revoke(@Param('id') id: string, @CurrentPrincipal() who: Principal) {
    const revoked = await this.tokens.revoke(id, who.name);
    await this.audit.record({
      actor: who.name,
      role: who.role,
      from: who.from,
      action: 'token.revoke',
      outcome: 'ok',
      status: 200,
      target: id,
      after: revoked,
    });
    return revoked;
  }
}
