import { Schema } from 'mongoose';

/**
 * `agent`: what an application's agent presents on the agent protocol; it reads nothing through
 * the REST API (every route needs at least `viewer`).
 */
export const ROLES = ['agent', 'viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Each role may do what the roles before it may. */
export function roleAllows(held: Role, needed: Role): boolean {
  return ROLES.indexOf(held) >= ROLES.indexOf(needed);
}

/**
 * An API token as stored: the secret never is, only its SHA-256. Tokens are 32 random bytes, so
 * a fast hash is enough (a slow password hash protects low-entropy secrets, which these are not).
 */
export interface ApiToken {
  _id: string;
  name: string;
  role: Role;
  secretHash: string;
  /** Agent tokens only: the applications whose agents may use it; absent = any application. */
  applications?: string[];
  createdAt: Date;
  createdBy: string;
  revokedAt?: Date;
  revokedBy?: string;
}

export const API_TOKEN = 'ApiToken';

export const ApiTokenSchema = new Schema<ApiToken>(
  {
    _id: { type: String, required: true },
    name: { type: String, required: true },
    role: { type: String, required: true, enum: ROLES },
    secretHash: { type: String, required: true },
    applications: { type: [String], default: undefined },
    createdAt: { type: Date, required: true },
    createdBy: { type: String, required: true },
    revokedAt: { type: Date },
    revokedBy: { type: String },
  },
  { collection: 'api_tokens', versionKey: false },
);
