import type { z } from 'zod';
import type { CatalogChange, CatalogInstance } from '../registry-bridge/catalog.js';
import { entryKey, mergeEntries } from '../stats/rollup.js';
import type { CallRecordSchema, StatsEntry } from './messages.js';
import { isPeerAddress, normaliseHost, peerAddress } from './peer-address.js';

/**
 * Who listens where, for the server: agents report an outbound call whose callee they could not
 * name with the address it went to (`host:port`, peer-address.ts); the hub rewrites such peers to
 * the application listening there before the frame goes to Kafka, so the dependency graph gets its
 * caller → callee edge even when the callee runs no agent. The addresses come from the registry
 * catalog's instances (Dubbo providers, Eureka instances) and from the connected agents' `hello`
 * host and ports; both are kept up to date change by change (no rebuild of the whole estate), and
 * resolving is one or two Map lookups per address peer. An address nobody knows stays as it is.
 */

type CallRecord = z.output<typeof CallRecordSchema>;

const APPLICATION = /^[a-z0-9][a-z0-9._-]{0,127}$/;
const LOOPBACK = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\]):/;

interface Claim {
  application: string;
  /** Lower wins when several claim one address: a running instance before a down or stale one. */
  rank: number;
}

/**
 * One source's claims (owner → application at addresses), with the answer per address precomputed.
 * Nearly every address has one claimant, held as its owner id; only a shared address gets a Map.
 */
class AddressBook {
  private readonly owners = new Map<string, { claim: Claim; addresses: readonly string[] }>();
  private readonly claims = new Map<string, string | Map<string, Claim>>();
  readonly resolved = new Map<string, string>();

  /** Replaces what `owner` claims (idempotent). */
  set(owner: string, claim: Claim, addresses: readonly string[]): void {
    this.delete(owner);
    if (addresses.length === 0) return;
    this.owners.set(owner, { claim, addresses });
    for (const address of addresses) {
      const at = this.claims.get(address);
      if (at === undefined) {
        this.claims.set(address, owner);
        this.resolved.set(address, claim.application);
        continue;
      }
      let shared: Map<string, Claim>;
      if (typeof at === 'string') {
        shared = new Map<string, Claim>([[at, this.owners.get(at)!.claim]]);
        this.claims.set(address, shared);
      } else shared = at;
      shared.set(owner, claim);
      this.decide(address, shared);
    }
  }

  delete(owner: string): void {
    const known = this.owners.get(owner);
    if (known === undefined) return;
    this.owners.delete(owner);
    for (const address of known.addresses) {
      const at = this.claims.get(address);
      if (at === undefined) continue;
      if (typeof at === 'string') {
        if (at !== owner) continue;
        this.claims.delete(address);
        this.resolved.delete(address);
        continue;
      }
      at.delete(owner);
      if (at.size === 1) {
        const [last, claim] = at.entries().next().value as [string, Claim];
        this.claims.set(address, last);
        this.resolved.set(address, claim.application);
      } else this.decide(address, at);
    }
  }

  /** The best claim: lowest rank, then the smallest name, so the answer never depends on arrival order. */
  private decide(address: string, at: Map<string, Claim>): void {
    let best: Claim | undefined;
    for (const claim of at.values()) {
      if (best === undefined || claim.rank < best.rank || (claim.rank === best.rank && claim.application < best.application)) {
        best = claim;
      }
    }
    this.resolved.set(address, best!.application);
  }
}

/** A catalog instance's rank: UP and fresh first, then UP from an unreachable registry, then the rest. */
function rankOf(instance: CatalogInstance): number {
  if (instance.status !== 'UP') return 2;
  return instance.stale ? 1 : 0;
}

export interface AgentAddresses {
  instanceId: string;
  application: string;
  host: string;
  ports: readonly number[];
}

export class PeerIndex {
  /** Connected agents: they say themselves where they listen, so they win over the catalog. */
  private readonly agents = new AddressBook();
  private readonly catalog = new AddressBook();
  /** Each connected agent's host (normalised): a call it made to a loopback address went to that host. */
  private readonly hosts = new Map<string, string>();

  /** An agent connected or announced new ports; replaces what it claimed before. */
  agentListening(agent: AgentAddresses): void {
    const host = normaliseHost(agent.host);
    this.hosts.set(agent.instanceId, host);
    const addresses = agent.ports.map((port) => peerAddress(host, port)).filter((a) => a !== '');
    this.agents.set(agent.instanceId, { application: agent.application, rank: 0 }, addresses);
  }

  agentGone(instanceId: string): void {
    this.hosts.delete(instanceId);
    this.agents.delete(instanceId);
  }

  /** The whole catalog, e.g. at start (repeating instances already known is harmless). */
  loadCatalog(instances: Iterable<CatalogInstance>): void {
    for (const instance of instances) this.catalogInstance(instance);
  }

  /** A catalog change batch, in order. */
  catalogChanged(changes: readonly CatalogChange[]): void {
    for (const change of changes) {
      if (change.type === 'removed') this.catalog.delete(change.instance.id);
      else this.catalogInstance(change.instance);
    }
  }

  private catalogInstance(instance: CatalogInstance): void {
    const address = APPLICATION.test(instance.application) ? peerAddress(instance.host, instance.port) : '';
    this.catalog.set(instance.id, { application: instance.application, rank: rankOf(instance) }, address === '' ? [] : [address]);
  }

  /**
   * The application listening at `address` (a normalised `host:port`), or undefined. A loopback
   * address seen by agent `reporter` is first read as that agent's own host.
   */
  resolve(address: string, reporter?: string): string | undefined {
    if (reporter !== undefined && LOOPBACK.test(address)) {
      const host = this.hosts.get(reporter);
      if (host !== undefined) {
        const local = this.lookup(`${host}${address.slice(address.lastIndexOf(':'))}`);
        if (local !== undefined) return local;
      }
    }
    return this.lookup(address);
  }

  private lookup(address: string): string | undefined {
    return this.agents.resolved.get(address) ?? this.catalog.resolved.get(address);
  }

  /** A stats or records frame from agent `reporter` with its address peers resolved (the frame itself when none is). */
  resolveFrame<F extends { type: 'stats'; entries: StatsEntry[] } | { type: 'records'; records: CallRecord[] }>(
    reporter: string,
    frame: F,
  ): F {
    const resolve = (address: string) => this.resolve(address, reporter);
    if (frame.type === 'stats') {
      const entries = resolveEntries(frame.entries, resolve);
      return entries === frame.entries ? frame : { ...frame, entries };
    }
    const records = resolveRecords(frame.records, resolve);
    return records === frame.records ? frame : { ...frame, records };
  }
}

// ---- frames -------------------------------------------------------------------------------------

/** One entry of the same key as both: counters added, the larger maximum, histograms merged. */
export function mergeEntry(a: StatsEntry, b: StatsEntry): StatsEntry {
  return mergeEntries([[a], [b]])[0]!;
}

/**
 * Entries with every address peer `resolve` knows replaced by its application; entries that then
 * share a key (direction, peer, protocol, resource) are merged into the first of them. Returns
 * `entries` itself when no peer was resolved; never changes the entries it is given.
 */
export function resolveEntries(entries: readonly StatsEntry[], resolve: (address: string) => string | undefined): StatsEntry[] {
  let out: StatsEntry[] | undefined;
  /** Applications that address peers resolved to: only entries naming one of them can collide. */
  let named: Set<string> | undefined;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    if (!isPeerAddress(entry.peer)) continue;
    const application = resolve(entry.peer);
    if (application === undefined) continue;
    out ??= entries.slice();
    out[i] = { ...entry, peer: application };
    (named ??= new Set()).add(application);
  }
  if (out === undefined || named === undefined) return entries as StatsEntry[];

  const first = new Map<string, number>();
  const merged: StatsEntry[] = [];
  for (const entry of out) {
    if (!named.has(entry.peer)) {
      merged.push(entry);
      continue;
    }
    const key = entryKey(entry);
    const at = first.get(key);
    if (at === undefined) {
      first.set(key, merged.length);
      merged.push(entry);
    } else {
      merged[at] = mergeEntry(merged[at]!, entry);
    }
  }
  return merged;
}

/** Records with every address caller or callee `resolve` knows replaced by its application; `records` itself when none. */
export function resolveRecords(records: readonly CallRecord[], resolve: (address: string) => string | undefined): CallRecord[] {
  let out: CallRecord[] | undefined;
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    const caller = isPeerAddress(record.caller) ? resolve(record.caller) : undefined;
    const callee = isPeerAddress(record.callee) ? resolve(record.callee) : undefined;
    if (caller === undefined && callee === undefined) continue;
    out ??= records.slice();
    out[i] = { ...record, ...(caller === undefined ? {} : { caller }), ...(callee === undefined ? {} : { callee }) };
  }
  return out ?? (records as CallRecord[]);
}
