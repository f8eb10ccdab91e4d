import { Injectable } from '@nestjs/common';

/** "The rule set of `application` is now at `revision`." */
export interface RuleSetChanged {
  application: string;
  revision: number;
}

/**
 * The port between "a rule set changed" and "push it to agents". This replica's RuleStore
 * publishes every commit; the agent hub subscribes. A multi-replica deployment backs it with a
 * shared log (Kafka) so every replica hears every commit; a revision poller covers what is
 * written behind the API's back either way.
 */
export abstract class RuleChangeFeed {
  abstract publish(change: RuleSetChanged): void;
  abstract subscribe(listener: (change: RuleSetChanged) => void): () => void;
}

/** In-process delivery, synchronous; a throwing listener does not stop the others. */
@Injectable()
export class LocalRuleChangeFeed extends RuleChangeFeed {
  private readonly listeners = new Set<(change: RuleSetChanged) => void>();

  publish(change: RuleSetChanged): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch {
        // The listener owns its errors; delivery to the rest must not depend on it.
      }
    }
  }

  subscribe(listener: (change: RuleSetChanged) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
