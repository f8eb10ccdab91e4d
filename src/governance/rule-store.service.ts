import { randomUUID } from 'node:crypto';
import { BadRequestException, ConflictException, Injectable, NotFoundException } from '@nestjs/common';
import { InjectModel } from '@nestjs/mongoose';
import type { Model } from 'mongoose';
import { findConflicts, type Conflict } from '../agent-protocol/rule-conflicts.js';
import { parseRule, type Rule, ruleTargetKey } from '../agent-protocol/rules.js';
import { AuditLog } from '../audit/audit-log.service.js';
import type { Principal } from '../auth/principal.js';
import type { FieldIssue } from '../common/zod-validation.pipe.js';
import { RuleChangeFeed } from './rule-change-feed.js';
import {
  RULE,
  RULE_REVISION,
  RULE_SET,
  type RevisionKind,
  type RuleChange,
  type RuleDoc,
  type RuleRevisionDoc,
  type RuleSetDoc,
} from './rule-store.model.js';

export interface RuleSetView {
  application: string;
  revision: number;
  rules: Rule[];
  conflicts: Conflict[];
}

/** A write's outcome; its `conflicts` are those involving the rules the write created or changed. */
export interface CommitResult extends RuleSetView {
  /** False when the write changed nothing (no new revision was made). */
  changed: boolean;
  changes: RuleChange[];
}

export interface Who extends Pick<Principal, 'name' | 'role' | 'from'> {
  reason: string;
}

/** A stale `If-Match` or a lost race: nothing was written. */
export class StaleRevisionError extends ConflictException {
  constructor(application: string, expected: number, current: number) {
    super({
      statusCode: 409,
      error: 'Conflict',
      message: `${application} is at revision ${current}, not ${expected}: reload and try again`,
      currentRevision: current,
    });
  }
}

const byId = (a: Rule, b: Rule) => a.id.localeCompare(b.id);

/**
 * Rules, their revisions and their history. Every change makes a new revision of the
 * application's rule set (a monotonic number agents acknowledge); a write that names a stale
 * revision changes nothing and gets 409; rollback restores an earlier set as a new revision.
 */
@Injectable()
export class RuleStore {
  /** The last complete rule set read or written per application, by revision. */
  private readonly cache = new Map<string, { revision: number; rules: Map<string, Rule> }>();

  constructor(
    @InjectModel(RULE_SET) private readonly sets: Model<RuleSetDoc>,
    @InjectModel(RULE_REVISION) private readonly revisions: Model<RuleRevisionDoc>,
    @InjectModel(RULE) private readonly rules: Model<RuleDoc>,
    private readonly audit: AuditLog,
    private readonly feed: RuleChangeFeed,
  ) {}

  async current(application: string): Promise<RuleSetView> {
    const { revision, rules } = await this.snapshot(application);
    const list = [...rules.values()].sort(byId);
    return { application, revision, rules: list, conflicts: findConflicts(list) };
  }

  /**
   * The current rule set, from memory when this replica already read that revision. A commit
   * claims its revision, writes the rules, and writes the revision document last; so a revision
   * whose document exists is complete, and one whose document is missing is still being written.
   */
  private async snapshot(application: string): Promise<{ revision: number; rules: Map<string, Rule> }> {
    for (let attempt = 0; ; attempt++) {
      const revision = (await this.sets.findById(application).lean<RuleSetDoc>().exec())?.revision ?? 0;
      const cached = this.cache.get(application);
      if (cached?.revision === revision) return cached;
      const complete = revision === 0 || (await this.revisions.exists({ _id: `${application}@${revision}` })) !== null;
      if (!complete && attempt < 20) {
        await new Promise((r) => setTimeout(r, 25));
        continue;
      }
      const docs = await this.rules.find({ application }).lean<RuleDoc[]>().exec();
      const fresh = { revision, rules: new Map(docs.map((d) => [d.rule.id, d.rule])) };
      // A set read while a commit was half-written is served once but never cached.
      if (complete) this.cache.set(application, fresh);
      return fresh;
    }
  }

  /**
   * The rule set as stored, for pushing to agents: rules are not re-checked here (agents check
   * every pushed rule and NACK what they refuse, so a set damaged in the database is visible).
   */
  async storedSet(application: string): Promise<{ revision: number; rules: Rule[] }> {
    const { revision, rules } = await this.snapshot(application);
    return { revision, rules: [...rules.values()].sort(byId) };
  }

  /** The current revision of each application named; 0 for one without rules. */
  async currentRevisions(applications: readonly string[]): Promise<Map<string, number>> {
    const docs = await this.sets
      .find({ _id: { $in: applications } })
      .lean<RuleSetDoc[]>()
      .exec();
    const out = new Map(applications.map((a) => [a, 0]));
    for (const doc of docs) out.set(doc._id, doc.revision);
    return out;
  }

  /** Rules across applications, filtered, one page at a time. */
  async search(
    filter: { application?: string; kind?: string; enabled?: boolean; target?: string },
    page: { offset: number; limit: number },
  ) {
    const query: Record<string, unknown> = {};
    if (filter.application) query['application'] = filter.application;
    // A target key, or its beginning: `orders|inbound`, `orders|outbound|stock|dubbo|com.example.StockService`.
    if (filter.target) query['targetKey'] = { $regex: `^${filter.target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}` };
    if (filter.kind) query['rule.kind'] = filter.kind;
    if (filter.enabled !== undefined) query['rule.enabled'] = filter.enabled;
    const [docs, total] = await Promise.all([
      this.rules.find(query).sort({ application: 1, _id: 1 }).skip(page.offset).limit(page.limit).lean<RuleDoc[]>().exec(),
      this.rules.countDocuments(query).exec(),
    ]);
    return {
      total,
      items: docs.map((d) => ({
        ...d.rule,
        targetKey: d.targetKey,
        revision: d.revision,
        updatedAt: d.updatedAt,
        updatedBy: d.updatedBy,
      })),
    };
  }

  /** Checks a payload as a write would, and reports the conflicts it would cause, writing nothing. */
  async validate(
    application: string,
    payload: unknown,
    id?: string,
  ): Promise<{ valid: boolean; issues: FieldIssue[]; conflicts: Conflict[] }> {
    const parsed = this.parse(application, payload, id ?? 'dry-run');
    if (!parsed.ok) return { valid: false, issues: parsed.issues, conflicts: [] };
    const { rules } = await this.snapshot(application);
    const next = [...[...rules.values()].filter((r) => r.id !== parsed.rule.id), parsed.rule];
    const conflicts = findConflicts(next, new Set([parsed.rule.id]));
    return { valid: true, issues: [], conflicts };
  }

  create(application: string, payload: unknown, who: Who, expected?: number): Promise<CommitResult> {
    const rule = this.parseOrThrow(application, payload, randomUUID());
    return this.commit(application, 'create', who, expected, () => [{ ruleId: rule.id, before: null, after: rule }]);
  }

  update(application: string, id: string, payload: unknown, who: Who, expected?: number): Promise<CommitResult> {
    const rule = this.parseOrThrow(application, payload, id);
    return this.commit(application, 'update', who, expected, (current) => {
      const before = current.get(id);
      if (!before) throw new NotFoundException(`${application} has no rule "${id}"`);
      return JSON.stringify(before) === JSON.stringify(rule) ? [] : [{ ruleId: id, before, after: rule }];
    });
  }

  remove(application: string, id: string, who: Who, expected?: number): Promise<CommitResult> {
    return this.commit(application, 'delete', who, expected, (current) => {
      const before = current.get(id);
      if (!before) throw new NotFoundException(`${application} has no rule "${id}"`);
      return [{ ruleId: id, before, after: null }];
    });
  }

  /** Restores the rule set of an earlier revision, as a new revision. */
  rollback(application: string, toRevision: number, who: Who, expected?: number): Promise<CommitResult> {
    return this.commit(
      application,
      'rollback',
      who,
      expected,
      async (current, revision) => {
        if (toRevision >= revision)
          throw new BadRequestException(`revision ${toRevision} is not earlier than the current ${revision}`);
        const later = await this.revisions
          .find({ application, revision: { $gt: toRevision, $lte: revision } })
          .sort({ revision: -1 })
          .lean<RuleRevisionDoc[]>()
          .exec();
        // Undo every revision after the target, newest first: what remains is the target's set.
        const target = new Map(current);
        for (const doc of later) {
          for (const change of doc.changes) {
            if (change.before) target.set(change.ruleId, change.before);
            else target.delete(change.ruleId);
          }
        }
        const ids = new Set([...current.keys(), ...target.keys()]);
        return [...ids].sort().flatMap((ruleId) => {
          const before = current.get(ruleId) ?? null;
          const after = target.get(ruleId) ?? null;
          return JSON.stringify(before) === JSON.stringify(after) ? [] : [{ ruleId, before, after }];
        });
      },
      toRevision,
    );
  }

  async history(application: string, page: { offset: number; limit: number }, ruleId?: string) {
    const filter = ruleId ? { application, ruleIds: ruleId } : { application };
    const [items, total] = await Promise.all([
      this.revisions.find(filter).sort({ revision: -1 }).skip(page.offset).limit(page.limit).lean<RuleRevisionDoc[]>().exec(),
      this.revisions.countDocuments(filter).exec(),
    ]);
    return {
      total,
      items: ruleId ? items.map((r) => ({ ...r, changes: r.changes.filter((c) => c.ruleId === ruleId) })) : items,
    };
  }

  // ---- internals ------------------------------------------------------------------------------

  private parse(
    application: string,
    payload: unknown,
    id: string,
  ): { ok: true; rule: Rule } | { ok: false; issues: FieldIssue[] } {
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      return { ok: false, issues: [{ path: 'rule', message: 'must be a JSON object' }] };
    }
    const claimed = (payload as Record<string, unknown>)['application'];
    if (claimed !== undefined && claimed !== application) {
      return {
        ok: false,
        issues: [{ path: 'rule.application', message: `must be "${application}" (the application in the URL) or absent` }],
      };
    }
    if ('id' in payload && (payload as Record<string, unknown>)['id'] !== id) {
      return { ok: false, issues: [{ path: 'rule.id', message: 'is assigned by the server and cannot be changed' }] };
    }
    const result = parseRule({ ...payload, id, application });
    return result.ok
      ? { ok: true, rule: result.rule }
      : { ok: false, issues: result.issues.map((i) => ({ path: i.path ? `rule.${i.path}` : 'rule', message: i.message })) };
  }

  private parseOrThrow(application: string, payload: unknown, id: string): Rule {
    const parsed = this.parse(application, payload, id);
    if (!parsed.ok) {
      throw new BadRequestException({
        statusCode: 400,
        error: 'Bad Request',
        message: `invalid rule: ${parsed.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
        issues: parsed.issues,
      });
    }
    return parsed.rule;
  }

  /**
   * Claims the next revision with a compare-and-set, then writes the revision and the rules.
   * Without `expected`, a lost race is retried on the new state; with it, it is a 409.
   */
  private async commit(
    application: string,
    kind: RevisionKind,
    who: Who,
    expected: number | undefined,
    plan: (current: Map<string, Rule>, revision: number) => RuleChange[] | Promise<RuleChange[]>,
    rollbackTo?: number,
  ): Promise<CommitResult> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const { revision, rules } = await this.snapshot(application);
      if (expected !== undefined && expected !== revision) throw new StaleRevisionError(application, expected, revision);
      const changes = await plan(new Map(rules), revision);
      if (changes.length === 0)
        return { application, revision, rules: [...rules.values()], conflicts: [], changed: false, changes };
      if (!(await this.claim(application, revision))) {
        if (expected !== undefined) {
          const now = (await this.sets.findById(application).lean<RuleSetDoc>().exec())?.revision ?? revision;
          throw new StaleRevisionError(application, expected, now);
        }
        continue;
      }
      const next = revision + 1;
      const at = new Date();
      await Promise.all(
        changes.map((c) =>
          c.after
            ? this.rules
                .replaceOne(
                  { _id: c.ruleId },
                  {
                    _id: c.ruleId,
                    application,
                    revision: next,
                    rule: c.after,
                    targetKey: ruleTargetKey(c.after),
                    updatedAt: at,
                    updatedBy: who.name,
                  },
                  { upsert: true },
                )
                .exec()
            : this.rules.deleteOne({ _id: c.ruleId }).exec(),
        ),
      );
      // Last: its existence marks the revision complete (see snapshot()).
      await this.revisions.create({
        _id: `${application}@${next}`,
        application,
        revision: next,
        kind,
        ...(rollbackTo !== undefined ? { rollbackTo } : {}),
        ruleIds: changes.map((c) => c.ruleId),
        changes,
        actor: who.name,
        from: who.from,
        reason: who.reason,
        at,
      });
      const after = new Map(rules);
      for (const c of changes) {
        if (c.after) after.set(c.ruleId, c.after);
        else after.delete(c.ruleId);
      }
      this.cache.set(application, { revision: next, rules: after });
      this.feed.publish({ application, revision: next });
      await this.audit.record({
        actor: who.name,
        role: who.role,
        from: who.from,
        action: `rule.${kind}`,
        outcome: 'ok',
        status: kind === 'create' ? 201 : 200,
        application,
        target: changes.length === 1 ? changes[0]!.ruleId : `${changes.length} rules`,
        revision: next,
        before: changes.length === 1 ? changes[0]!.before : changes.map((c) => c.before),
        after: changes.length === 1 ? changes[0]!.after : changes.map((c) => c.after),
        reason: who.reason,
      });
      const result = [...after.values()];
      const written = new Set(changes.filter((c) => c.after).map((c) => c.ruleId));
      return { application, revision: next, rules: result, conflicts: findConflicts(result, written), changed: true, changes };
    }
    throw new ConflictException(`${application}'s rules kept changing during this write; try again`);
  }

  /** Revision N → N+1, only if still at N. */
  private async claim(application: string, revision: number): Promise<boolean> {
    if (revision === 0) {
      try {
        await this.sets.create({ _id: application, revision: 1, updatedAt: new Date() });
        return true;
      } catch (error) {
        if ((error as { code?: number }).code === 11000) return false;
        throw error;
      }
    }
    const claimed = await this.sets
      .findOneAndUpdate({ _id: application, revision }, { $set: { revision: revision + 1, updatedAt: new Date() } })
      .lean()
      .exec();
    return claimed !== null;
  }
}
