import { LATENCY_BUCKETS } from '../../../src/agent-protocol/latency-histogram.js';
import { PEER } from '../../../src/agent-protocol/peer-address.js';
import { type StatsSlot } from './call-stats.js';
import { OTHER_RESOURCE, resourceOf } from './resource.js';
import { DUBBO, INBOUND, type SecondStats, type StatsEntry } from './types.js';

/**
 * Builds stats frame entries from drained slots (once a second, so it may allocate): slots are
 * grouped by second and merged by (direction, peer, protocol, resource), where the resource names
 * the key's route rather than its path (resource.ts) and the peer is the key's remote: an
 * application name or, for an outbound call to an unnamed callee, its `host:port` (peer-address.ts).
 * At most MAX_KEYS_PER_SECOND keys per second; the calls of further keys are merged into one
 * `(other)` key per direction and protocol.
 */

export const MAX_KEYS_PER_SECOND = 2_000;

function resourceOfSlot(slot: StatsSlot): string {
  const key = slot.key;
  if (key.overflow) return OTHER_RESOURCE;
  return (key.resource ??= resourceOf(key.protocol, key.verb, key.name));
}

/** The sparse histogram of `dense` plus `sparse` (ascending buckets). */
function addHistogram(sparse: [number, number][], dense: Uint32Array): [number, number][] {
  const out: [number, number][] = [];
  let j = 0;
  for (let i = 0; i < LATENCY_BUCKETS; i++) {
    let count = dense[i]!;
    if (j < sparse.length && sparse[j]![0] === i) count += sparse[j++]![1];
    if (count > 0) out.push([i, count]);
  }
  return out;
}

function add(entry: StatsEntry, slot: StatsSlot): void {
  entry.calls += slot.calls;
  entry.successes += slot.successes;
  entry.errors += slot.errors;
  entry.limited += slot.limited;
  entry.broken += slot.broken;
  entry.degraded += slot.degraded;
  entry.slow += slot.slow;
  entry.latencySumMs += slot.latencySumMs;
  if (slot.latencyMaxMs > entry.latencyMaxMs) entry.latencyMaxMs = slot.latencyMaxMs;
  if (slot.successes + slot.errors > 0) entry.histogram = addHistogram(entry.histogram, slot.latencyHistogram);
}

/** Runs `drain` (which visits slots, then resets them) and returns its seconds' entries, ascending. */
export function collectSeconds(drain: (visit: (slot: StatsSlot) => void) => void, maxKeys = MAX_KEYS_PER_SECOND): SecondStats[] {
  const seconds = new Map<number, Map<string, StatsEntry>>();
  drain((slot) => {
    let entries = seconds.get(slot.second);
    if (entries === undefined) seconds.set(slot.second, (entries = new Map<string, StatsEntry>()));
    const key = slot.key;
    const direction = key.direction === INBOUND ? 'inbound' : 'outbound';
    const protocol = key.protocol === DUBBO ? 'dubbo' : 'http';
    let peer = PEER.test(key.remote) ? key.remote : '';
    let resource = resourceOfSlot(slot);
    let id = `${direction}|${peer}|${protocol}|${resource}`;
    let entry = entries.get(id);
    if (entry === undefined && entries.size >= maxKeys) {
      peer = '';
      resource = OTHER_RESOURCE;
      id = `${direction}|${peer}|${protocol}|${resource}`;
      entry = entries.get(id);
    }
    if (entry === undefined) {
      entry = {
        direction,
        peer,
        protocol,
        resource,
        calls: 0,
        successes: 0,
        errors: 0,
        limited: 0,
        broken: 0,
        degraded: 0,
        slow: 0,
        latencySumMs: 0,
        latencyMaxMs: 0,
        histogram: [],
      };
      entries.set(id, entry);
    }
    add(entry, slot);
  });
  return [...seconds].sort(([a], [b]) => a - b).map(([second, entries]) => ({ second, entries: [...entries.values()] }));
}
