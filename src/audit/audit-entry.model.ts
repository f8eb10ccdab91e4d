import { Schema } from 'mongoose';

/** One line of the audit log: every change, and every refused attempt. */
export interface AuditEntry {
  _id: string;
  at: Date;
  /** Token name, or `anonymous` for a request without a valid token. */
  actor: string;
  role?: string;
  /** Client address as the server saw it. */
  from: string;
  /** e.g. `rule.create`, `rule.rollback`, `control.isolate`, `token.create`, `auth.denied`. */
  action: string;
  outcome: 'ok' | 'denied' | 'rejected' | 'failed';
  status: number;
  application?: string;
  target?: string;
  revision?: number;
  before?: unknown;
  after?: unknown;
  reason?: string;
  detail?: string;
}

export const AUDIT_ENTRY = 'AuditEntry';

export const AuditEntrySchema = new Schema<AuditEntry>(
  {
    _id: { type: String, required: true },
    at: { type: Date, required: true, index: true },
    actor: { type: String, required: true, index: true },
    role: { type: String },
    from: { type: String, required: true },
    action: { type: String, required: true, index: true },
    outcome: { type: String, required: true, enum: ['ok', 'denied', 'rejected', 'failed'] },
    status: { type: Number, required: true },
    application: { type: String, index: true },
    target: { type: String },
    revision: { type: Number },
    before: { type: Schema.Types.Mixed },
    after: { type: Schema.Types.Mixed },
    reason: { type: String },
    detail: { type: String },
  },
  { collection: 'audit_log', versionKey: false, minimize: false },
);
