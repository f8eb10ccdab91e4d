import { type CanActivate, type ExecutionContext, ForbiddenException, Injectable, UnauthorizedException } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuditLog } from '../audit/audit-log.service.js';
import { type Role, roleAllows } from './api-token.model.js';
import { ApiTokens } from './api-tokens.service.js';
import { type AuthenticatedRequest, PUBLIC, REQUIRED_ROLE } from './principal.js';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Every route needs a bearer token unless marked @Public(): reads need `viewer`, writes
 * `operator`, unless the handler asks for more with @RequireRole. Refusals are audited.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly tokens: ApiTokens,
    private readonly audit: AuditLog,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC, targets)) return true;
    const req = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const needed: Role =
      this.reflector.getAllAndOverride<Role>(REQUIRED_ROLE, targets) ?? (READS.has(req.method) ? 'viewer' : 'operator');
    const from = req.ip ?? 'unknown';
    const header = req.header('authorization') ?? '';
    const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    const identity = token ? await this.tokens.verify(token) : undefined;
    if (!identity) {
      await this.refuse(req, from, 'anonymous', undefined, 401, token ? 'unknown or revoked token' : 'no bearer token');
      throw new UnauthorizedException(
        token ? 'unknown or revoked API token' : 'an API token is required: Authorization: Bearer <token>',
      );
    }
    if (!roleAllows(identity.role, needed)) {
      await this.refuse(req, from, identity.name, identity.role, 403, `needs ${needed}`);
      throw new ForbiddenException(`this needs the ${needed} role; your token has ${identity.role}`);
    }
    req.principal = { ...identity, from };
    return true;
  }

  private async refuse(
    req: AuthenticatedRequest,
    from: string,
    actor: string,
    role: Role | undefined,
    status: number,
    detail: string,
  ) {
    // A refusal is refused even when the database cannot take the audit entry (it is in the log).
    await this.audit
      .record({
        actor,
        ...(role ? { role } : {}),
        from,
        action: 'auth.denied',
        outcome: 'denied',
        status,
        target: `${req.method} ${req.path}`,
        detail,
      })
      .catch(() => undefined);
  }
}
