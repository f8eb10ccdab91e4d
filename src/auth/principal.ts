import { createParamDecorator, type ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Request } from 'express';
import type { Role } from './api-token.model.js';

/** Who is calling, as established by the auth guard. */
export interface Principal {
  name: string;
  role: Role;
  tokenId: string;
  /** Client address, for the audit log. */
  from: string;
}

export type AuthenticatedRequest = Request & { principal?: Principal };

export const REQUIRED_ROLE = 'steward:required-role';
export const PUBLIC = 'steward:public';

/** The role a handler needs; without it, reads need `viewer` and writes `operator`. */
export const RequireRole = (role: Role) => SetMetadata(REQUIRED_ROLE, role);

/** Probes and scrapes (`/livez`, `/readyz`, `/metrics`) need no token. */
export const Public = () => SetMetadata(PUBLIC, true);

export const CurrentPrincipal = createParamDecorator((_: unknown, context: ExecutionContext): Principal => {
  const principal = context.switchToHttp().getRequest<AuthenticatedRequest>().principal;
  if (!principal) throw new Error('CurrentPrincipal used on a public route');
  return principal;
});
