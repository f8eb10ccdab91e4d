import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { InjectModel } from '@nestjs/mongoose';
import type { Model } from 'mongoose';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { AUDIT_ENTRY, type AuditEntry } from './audit-entry.model.js';

export interface AuditQuery {
  actor?: string;
  action?: string;
  application?: string;
  outcome?: AuditEntry['outcome'];
  from?: Date;
  to?: Date;
  offset: number;
  limit: number;
}

@Injectable()
export class AuditLog {
  constructor(
    @InjectModel(AUDIT_ENTRY) private readonly entries: Model<AuditEntry>,
    @InjectPinoLogger(AuditLog.name) private readonly logger: PinoLogger,
  ) {}

  /** Writes an entry; the JSON log gets it too, so a database outage never loses the fact. */
  async record(entry: Omit<AuditEntry, '_id' | 'at'>): Promise<void> {
    const full: AuditEntry = { _id: randomUUID(), at: new Date(), ...entry };
    this.logger.info({ audit: { ...full, before: undefined, after: undefined } }, `audit ${entry.action} ${entry.outcome}`);
    try {
      await this.entries.create(full);
    } catch (error) {
      this.logger.error({ audit: full, error: (error as Error).message }, 'audit entry not stored');
      throw error;
    }
  }

  async find(query: AuditQuery): Promise<{ total: number; items: AuditEntry[] }> {
    const filter: Record<string, unknown> = {};
    for (const key of ['actor', 'action', 'application', 'outcome'] as const) if (query[key]) filter[key] = query[key];
    if (query.from || query.to)
      filter['at'] = { ...(query.from ? { $gte: query.from } : {}), ...(query.to ? { $lte: query.to } : {}) };
    const [items, total] = await Promise.all([
      this.entries.find(filter).sort({ at: -1 }).skip(query.offset).limit(query.limit).lean<AuditEntry[]>().exec(),
      this.entries.countDocuments(filter).exec(),
    ]);
    return { total, items };
  }
}
