import { Schema } from 'mongoose';
import type { Rule } from '../agent-protocol/rules.js';

/**
 * How rules are kept (MongoDB; no multi-document transactions, which FerretDB lacks):
 *
 * - `rule_sets`: one document per application with its current revision number, the counter
 *   agents acknowledge. A write first claims revision N+1 with a compare-and-set on N: two writers
 *   on the same base cannot both win (the loser gets 409).
 * - `rule_revisions`: one document per revision: who, when, from where, why, and each rule's
 *   before and after. The application's history, each rule's history, and rollback (undo the
 *   revisions after the target, newest first) all read from here.
 * - `rules`: each rule's current state, for reads and for agents' snapshots.
 */

export interface RuleSetDoc {
  _id: string;
  revision: number;
  updatedAt: Date;
}

export interface RuleChange {
  ruleId: string;
  before: Rule | null;
  after: Rule | null;
}

export type RevisionKind = 'create' | 'update' | 'delete' | 'rollback';

export interface RuleRevisionDoc {
  _id: string;
  application: string;
  revision: number;
  kind: RevisionKind;
  /** For a rollback: the revision whose rule set was restored. */
  rollbackTo?: number;
  ruleIds: string[];
  changes: RuleChange[];
  actor: string;
  from: string;
  reason: string;
  at: Date;
}

export interface RuleDoc {
  _id: string;
  application: string;
  /** The application revision that last changed this rule. */
  revision: number;
  rule: Rule;
  /** `ruleTargetKey(rule)`, for listing rules by target. */
  targetKey: string;
  updatedAt: Date;
  updatedBy: string;
}

export const RULE_SET = 'RuleSet';
export const RULE_REVISION = 'RuleRevision';
export const RULE = 'Rule';

export const RuleSetSchema = new Schema<RuleSetDoc>(
  {
    _id: { type: String, required: true },
    revision: { type: Number, required: true },
    updatedAt: { type: Date, required: true },
  },
  { collection: 'rule_sets', versionKey: false },
);

export const RuleRevisionSchema = new Schema<RuleRevisionDoc>(
  {
    _id: { type: String, required: true },
    application: { type: String, required: true, index: true },
    revision: { type: Number, required: true },
    kind: { type: String, required: true, enum: ['create', 'update', 'delete', 'rollback'] },
    rollbackTo: { type: Number },
    ruleIds: { type: [String], required: true, index: true },
    changes: { type: Schema.Types.Mixed, required: true },
    actor: { type: String, required: true },
    from: { type: String, required: true },
    reason: { type: String, default: '' },
    at: { type: Date, required: true },
  },
  { collection: 'rule_revisions', versionKey: false, minimize: false },
);
RuleRevisionSchema.index({ application: 1, revision: -1 });

export const RuleSchemaDoc = new Schema<RuleDoc>(
  {
    _id: { type: String, required: true },
    application: { type: String, required: true, index: true },
    revision: { type: Number, required: true },
    rule: { type: Schema.Types.Mixed, required: true },
    targetKey: { type: String, required: true, index: true },
    updatedAt: { type: Date, required: true },
    updatedBy: { type: String, required: true },
  },
  { collection: 'rules', versionKey: false, minimize: false },
);
