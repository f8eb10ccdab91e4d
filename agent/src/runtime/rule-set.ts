import { checkPushedRules } from '../../../src/agent-protocol/messages.js';
import { parseRule, type Rule } from '../../../src/agent-protocol/rules.js';
import type { Engine } from '../engine/index.js';
import { errorText, type Logger } from './log.js';
import type { StateStore } from './state-store.js';

/**
 * The rule set the agent enforces, at a revision. A snapshot or delta is applied whole or not at
 * all (docs/agent-protocol.md): every rule is checked first, and only a set that passes reaches the
 * engine and the state file.
 */

export type Outcome = { ok: true } | { ok: false; reason: string };

/** Checks pushed rules one by one; the reason names the first bad rule, as a nack carries it. */
export function validateRules(raw: readonly unknown[]): { ok: true; rules: Rule[] } | { ok: false; reason: string } {
  const rules: Rule[] = [];
  const ids = new Set<string>();
  for (const item of raw) {
    const parsed = parseRule(item);
    if (!parsed.ok) {
      const check = checkPushedRules(raw);
      return { ok: false, reason: check.ok ? 'a rule is invalid' : check.reason };
    }
    if (ids.has(parsed.rule.id)) return { ok: false, reason: `rule ${parsed.rule.id}: the id occurs twice in the set` };
    ids.add(parsed.rule.id);
    rules.push(parsed.rule);
  }
  return { ok: true, rules };
}

export class RuleSet {
  /** The revision enforced now; 0 = none. */
  revision = 0;
  private byId = new Map<string, Rule>();

  constructor(
    private readonly engine: Pick<Engine, 'apply'>,
    private readonly store: StateStore,
    private readonly log: Logger,
  ) {}

  /** Applies the saved rule set, if there is a valid one (fail-static). */
  restore(): void {
    const held = this.store.load();
    if (held === undefined) return;
    const checked = validateRules(held.rules);
    if (!checked.ok) {
      this.log.warn('the saved rules are invalid; ignored', { file: this.store.file, reason: checked.reason });
      return;
    }
    const outcome = this.commit(held.revision, new Map(checked.rules.map((rule) => [rule.id, rule])), false);
    if (outcome.ok) this.log.info('enforcing the saved rules', { revision: held.revision, rules: checked.rules.length });
  }

  /** A snapshot: the whole set at `revision`. */
  replace(revision: number, raw: readonly unknown[]): Outcome {
    const checked = validateRules(raw);
    if (!checked.ok) return checked;
    return this.commit(revision, new Map(checked.rules.map((rule) => [rule.id, rule])), true);
  }

  /** A delta from the current revision: upserts replace rules by id, then deletes remove ids. */
  patch(revision: number, upserts: readonly unknown[], deletes: readonly string[]): Outcome {
    const checked = validateRules(upserts);
    if (!checked.ok) return checked;
    const next = new Map(this.byId);
    for (const rule of checked.rules) next.set(rule.id, rule);
    for (const id of deletes) next.delete(id);
    return this.commit(revision, next, true);
  }

  private commit(revision: number, next: Map<string, Rule>, save: boolean): Outcome {
    const rules = [...next.values()];
    try {
      this.engine.apply(rules);
    } catch (error) {
      // The engine takes validated rules; if it still fails, the set is refused like an invalid one.
      return { ok: false, reason: `the agent could not apply the rules: ${errorText(error)}` };
    }
    this.byId = next;
    this.revision = revision;
    if (save) this.store.save(revision, rules);
    return { ok: true };
  }
}
