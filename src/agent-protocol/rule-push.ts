import type { z } from 'zod';
import type { DeltaSchema, PeersSchema, SnapshotSchema } from './messages.js';

export type SnapshotFrame = z.output<typeof SnapshotSchema>;
export type DeltaFrame = z.output<typeof DeltaSchema>;
export type PeersFrame = z.output<typeof PeersSchema>;

/**
 * An application's rule set as last pushed: the snapshot frame (built once per revision, sent to
 * every agent that needs it) and each rule's JSON, to compute the next delta by comparison.
 */
export class PushedRuleSet {
  readonly snapshot: SnapshotFrame;
  /** Callees named by the set's outbound rules (rules that are not well-formed are skipped). */
  readonly callees: ReadonlySet<string>;
  private readonly json: Map<string, string>;

  constructor(
    readonly application: string,
    readonly revision: number,
    rules: readonly unknown[],
  ) {
    this.snapshot = { type: 'snapshot', application, revision, rules: [...rules] };
    this.json = new Map(rules.map((rule, index) => [ruleId(rule, index), JSON.stringify(rule)]));
    this.callees = outboundCallees(rules);
  }

  /** The delta from this set to `next`: upserts of new and changed rules, deletes of removed ones. */
  deltaTo(next: PushedRuleSet): DeltaFrame {
    const upserts: unknown[] = [];
    next.snapshot.rules.forEach((rule, index) => {
      const id = ruleId(rule, index);
      if (this.json.get(id) !== next.json.get(id)) upserts.push(rule);
    });
    const deletes = [...this.json.keys()].filter((id) => !next.json.has(id));
    return {
      type: 'delta',
      application: this.application,
      fromRevision: this.revision,
      revision: next.revision,
      upserts,
      deletes,
    };
  }
}

function outboundCallees(rules: readonly unknown[]): Set<string> {
  const out = new Set<string>();
  for (const rule of rules) {
    const target = (rule as { target?: { direction?: unknown; callee?: unknown } } | null)?.target;
    if (target?.direction === 'outbound' && typeof target.callee === 'string') out.add(target.callee);
  }
  return out;
}

/** A stored rule's id; a damaged rule without one is keyed by position, so it still travels (and is NACKed). */
function ruleId(rule: unknown, index: number): string {
  const id = (rule as { id?: unknown } | null)?.id;
  return typeof id === 'string' ? id : `#${index}`;
}
