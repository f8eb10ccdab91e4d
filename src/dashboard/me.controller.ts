import { Controller, Get } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { type Role } from '../auth/api-token.model.js';
import { CurrentPrincipal, type Principal, RequireRole } from '../auth/principal.js';

/** Who the caller's token is: the dashboard shows it and offers only what the role may do. */
@ApiTags('dashboard')
@ApiBearerAuth()
@Controller('api')
export class MeController {
  @Get('me')
  @RequireRole('viewer')
  @ApiOperation({ summary: 'The name and role of the bearer token (viewer, operator or admin).' })
  @ApiOkResponse({
    schema: {
      type: 'object',
      required: ['name', 'role'],
      properties: {
        name: { type: 'string', description: 'the token’s name; bootstrap-admin for ADMIN_TOKEN' },
        role: { type: 'string', enum: ['viewer', 'operator', 'admin'] },
      },
    },
  })
  me(@CurrentPrincipal() who: Principal): { name: string; role: Role } {
    return { name: who.name, role: who.role };
  }
}
