import type { AgentEvent } from '../agent-protocol/agent-directory.js';
import type { RuleSetChanged } from '../governance/rule-change-feed.js';
import type { CatalogChange } from '../registry-bridge/catalog.js';
import type { LiveSecond } from '../stats/live-seconds.js';

export type { AgentEvent } from '../agent-protocol/agent-directory.js';
export type { LiveSecond } from '../stats/live-seconds.js';

/**
 * `catalog`: the registry catalog's changes, in order; `seq` is the last change's. `reset` means
 * there were too many to send (a registry came back, a resync): reload the catalog over REST.
 */
export interface CatalogEvent {
  seq: number;
  changes: CatalogChange[];
  reset?: true;
}

/** `rules`: the rule set of `application` was committed at `revision`. */
export interface RulesEvent {
  application: string;
  revision: number;
  at: number;
}

/** What one flush sends, each kind at most one emit (catalog, agents) or one emit per item (rules, stats). */
export interface DashboardBatch {
  catalog?: CatalogEvent;
  rules: RulesEvent[];
  agents: AgentEvent[];
  stats: LiveSecond[];
  /** Events left out because their kind was over its limit since the previous flush. */
  dropped: { agents: number; rules: number; stats: number };
}

export interface DashboardLimits {
  catalogChanges: number;
  agents: number;
  rules: number;
  stats: number;
}

/** Per flush (250 ms): far above a steady estate, and small enough that no frame is huge. */
export const DEFAULT_LIMITS: DashboardLimits = { catalogChanges: 2_000, agents: 5_000, rules: 5_000, stats: 5_000 };

/**
 * Collects what happened between two flushes to the dashboards, bounded: a burst costs one emit
 * per kind, never one per event, and never more memory than the limits. Where a later event
 * supersedes an earlier one it replaces it (a rule set's newer revision, a second's later
 * revision); agents' events are all kept, in order. Plain class: the gateway flushes it.
 */
export class DashboardEventBuffer {
  private catalogChanges: CatalogChange[] = [];
  private catalogSeq?: number;
  private catalogReset = false;
  private agents: AgentEvent[] = [];
  private readonly rules = new Map<string, RulesEvent>();
  private readonly stats = new Map<string, LiveSecond>();
  private dropped = { agents: 0, rules: 0, stats: 0 };

  constructor(private readonly limits: DashboardLimits = DEFAULT_LIMITS) {}

  get empty(): boolean {
    return this.catalogSeq === undefined && this.agents.length === 0 && this.rules.size === 0 && this.stats.size === 0;
  }

  catalog(changes: readonly CatalogChange[]): void {
    const last = changes.at(-1);
    if (!last) return;
    this.catalogSeq = last.seq;
    if (this.catalogReset) return;
    if (this.catalogChanges.length + changes.length > this.limits.catalogChanges) {
      this.catalogReset = true;
      this.catalogChanges = [];
      return;
    }
    for (const change of changes) this.catalogChanges.push(change);
  }

  agent(event: AgentEvent): void {
    if (this.agents.length >= this.limits.agents) this.dropped.agents += 1;
    else this.agents.push(event);
  }

  ruleSet(change: RuleSetChanged, at: number): void {
    const known = this.rules.get(change.application);
    if (known && known.revision >= change.revision) return;
    if (!known && this.rules.size >= this.limits.rules) {
      this.dropped.rules += 1;
      return;
    }
    this.rules.set(change.application, { application: change.application, revision: change.revision, at });
  }

  second(second: LiveSecond): void {
    const key = `${second.application}\u0000${second.t}`;
    const known = this.stats.get(key);
    if (known && known.revision >= second.revision) return;
    if (!known && this.stats.size >= this.limits.stats) {
      this.dropped.stats += 1;
      return;
    }
    // Deleted first: a second sent again with a later revision goes after the ones already queued.
    this.stats.delete(key);
    this.stats.set(key, second);
  }

  /** Everything collected since the last drain, and empties the buffer. */
  drain(): DashboardBatch {
    const batch: DashboardBatch = {
      ...(this.catalogSeq === undefined
        ? {}
        : {
            catalog: this.catalogReset
              ? { seq: this.catalogSeq, changes: [], reset: true as const }
              : { seq: this.catalogSeq, changes: this.catalogChanges },
          }),
      rules: [...this.rules.values()],
      agents: this.agents,
      stats: [...this.stats.values()],
      dropped: this.dropped,
    };
    this.catalogChanges = [];
    this.catalogSeq = undefined;
    this.catalogReset = false;
    this.agents = [];
    this.rules.clear();
    this.stats.clear();
    this.dropped = { agents: 0, rules: 0, stats: 0 };
    return batch;
  }
}
