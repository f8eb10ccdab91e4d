import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ConflictException, Injectable, NotFoundException } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { InjectModel } from '@nestjs/mongoose';
import type { Model } from 'mongoose';
import type { AppConfig } from '../config/app-config.js';
import { API_TOKEN, type ApiToken, type Role } from './api-token.model.js';

const sha256 = (value: string) => createHash('sha256').update(value).digest();
const TOKEN = /^stw_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;
/** How long a verified token is trusted without asking the database again (and a revocation lags). */
const CACHE_MS = 30_000;

export interface Identity {
  name: string;
  role: Role;
  tokenId: string;
  /** For a scoped agent token, the applications it may speak for. */
  applications?: string[];
}

/** Issues, verifies and revokes API tokens: `stw_<id>.<secret>`. */
@Injectable()
export class ApiTokens {
  private readonly bootstrapHash?: Buffer;
  private readonly cache = new Map<string, { identity: Identity | undefined; until: number }>();

  constructor(
    config: ConfigService<AppConfig, true>,
    @InjectModel(API_TOKEN) private readonly tokens: Model<ApiToken>,
  ) {
    const admin = config.get('auth', { infer: true }).adminToken;
    if (admin) this.bootstrapHash = sha256(admin);
  }

  /** The identity behind a bearer token, or undefined. Never throws for a bad token. */
  async verify(token: string): Promise<Identity | undefined> {
    const hash = sha256(token);
    if (this.bootstrapHash && timingSafeEqual(hash, this.bootstrapHash)) {
      return { name: 'bootstrap-admin', role: 'admin', tokenId: 'bootstrap' };
    }
    const match = TOKEN.exec(token);
    if (!match) return undefined;
    const [, id, secret] = match as unknown as [string, string, string];
    const key = hash.toString('hex');
    const cached = this.cache.get(key);
    if (cached && cached.until > Date.now()) return cached.identity;
    const stored = await this.tokens.findById(id).lean<ApiToken>().exec();
    const identity =
      stored && !stored.revokedAt && timingSafeEqual(sha256(secret), Buffer.from(stored.secretHash, 'hex'))
        ? {
            name: stored.name,
            role: stored.role,
            tokenId: stored._id,
            ...(stored.applications ? { applications: stored.applications } : {}),
          }
        : undefined;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(key, { identity, until: Date.now() + CACHE_MS });
    return identity;
  }

  /** Creates a token; the secret is returned once and never stored. */
  async issue(
    name: string,
    role: Role,
    createdBy: string,
    applications?: string[],
  ): Promise<{ token: string; record: Omit<ApiToken, 'secretHash'> }> {
    if (await this.tokens.exists({ name, revokedAt: { $exists: false } }))
      throw new ConflictException(`a token named "${name}" exists`);
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const record: ApiToken = {
      _id: id,
      name,
      role,
      secretHash: sha256(secret).toString('hex'),
      ...(applications ? { applications } : {}),
      createdAt: new Date(),
      createdBy,
    };
    await this.tokens.create(record);
    const { secretHash: _hidden, ...visible } = record;
    return { token: `stw_${id}.${secret}`, record: visible };
  }

  async list(): Promise<Omit<ApiToken, 'secretHash'>[]> {
    return this.tokens.find({}, { secretHash: 0 }).sort({ createdAt: 1 }).lean<Omit<ApiToken, 'secretHash'>[]>().exec();
  }

  async revoke(id: string, revokedBy: string): Promise<Omit<ApiToken, 'secretHash'>> {
    // No projection on findAndModify: FerretDB 1.x does not implement it.
    const revoked = await this.tokens
      .findOneAndUpdate(
        { _id: id, revokedAt: { $exists: false } },
        { $set: { revokedAt: new Date(), revokedBy } },
        { returnDocument: 'after' },
      )
      .lean<ApiToken>()
      .exec();
    if (!revoked) throw new NotFoundException(`no active token "${id}"`);
    for (const [key, entry] of this.cache) if (entry.identity?.tokenId === id) this.cache.delete(key);
    const { secretHash: _hidden, ...visible } = revoked;
    return visible;
  }
}
