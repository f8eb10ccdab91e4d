import type { DubboServiceRef, InstanceStatus, Registration, RegistrationSink, SourceKind } from './registration.js';

/**
 * One catalog over every registry: applications → instances (Dubbo endpoints and HTTP endpoints)
 * → the Dubbo services they provide or consume. Registrations from any number of sources fold
 * into instances by (application, kind, host, port): a Dubbo 3 provider registered at interface
 * and application level is one instance; a Spring Boot app in Eureka and ZooKeeper under one name
 * is one application with both kinds of instances.
 *
 * Plain class, no I/O: sources call it through RegistrationSink; readers get consistent views;
 * listeners get ordered, debounced change batches.
 */

export interface CatalogInstance {
  /** `application|kind|host:port` */
  id: string;
  application: string;
  kind: 'dubbo' | 'http';
  host: string;
  port: number;
  status: InstanceStatus;
  weight: number;
  sources: string[];
  sourceKinds: SourceKind[];
  /** Every source that reported this instance is currently unreachable: it may be gone. */
  stale: boolean;
  services: DubboServiceRef[];
  metadata: Record<string, string>;
  /** How many registrations were merged into this instance. */
  registrations: number;
}

export interface CatalogApplication {
  name: string;
  sourceKinds: SourceKind[];
  instanceCount: number;
  dubboInstances: number;
  httpInstances: number;
  statusCounts: Partial<Record<InstanceStatus, number>>;
  /** Interfaces this application provides. */
  services: number;
  stale: boolean;
}

export interface ProvidedService {
  key: string;
  interface: string;
  group: string;
  version: string;
  protocols: string[];
  methods: string[];
  providers: number;
  /** Applications with a consumer registration for this service key. */
  consumers: string[];
}

export interface ApplicationDetail extends CatalogApplication {
  provides: ProvidedService[];
  /** Service keys this application consumes, with the applications that provide them. */
  consumes: { key: string; providers: string[] }[];
  instances: CatalogInstance[];
}

export interface CatalogChange {
  seq: number;
  type: 'added' | 'removed' | 'updated';
  at: number;
  /** The instance as it is now; for `removed`, as it was. */
  instance: CatalogInstance;
}

export interface SourceState {
  source: string;
  reachable: boolean;
  error?: string;
  since: number;
  registrations: number;
  badInput: Record<string, number>;
}

export interface InstanceFilter {
  application?: string;
  source?: string;
  sourceKind?: SourceKind;
  status?: InstanceStatus;
  host?: string;
  kind?: 'dubbo' | 'http';
  stale?: boolean;
}

export interface ServiceCatalogOptions {
  /** Changes are gathered this long and sent as one ordered batch (a remove+add pair becomes an update). */
  debounceMs?: number;
  onBadInput?: (source: string, kind: string, detail: string) => void;
}

// The status an instance shows when its registrations disagree: the most restrictive wins.
const STATUS_ORDER: InstanceStatus[] = ['DOWN', 'OUT_OF_SERVICE', 'DISABLED', 'STARTING', 'UNKNOWN', 'UP'];

const instanceId = (r: Pick<Registration, 'application' | 'kind' | 'host' | 'port'>) =>
  `${r.application}|${r.kind}|${r.host}:${r.port}`;
const regId = (source: string, key: string) => `${source}\u0000${key}`;

export class ServiceCatalog implements RegistrationSink {
  private readonly bySource = new Map<string, Map<string, Registration>>();
  private readonly byInstance = new Map<string, Map<string, Registration>>();
  private readonly byApplication = new Map<string, Set<string>>();
  private readonly views = new Map<string, CatalogInstance>();
  private readonly health = new Map<string, SourceState>();
  private readonly dirty = new Set<string>();
  private readonly listeners = new Set<(changes: CatalogChange[]) => void>();
  private timer?: NodeJS.Timeout;
  private seq = 0;
  private readonly debounceMs: number;

  constructor(private readonly options: ServiceCatalogOptions = {}) {
    this.debounceMs = options.debounceMs ?? 100;
  }

  // ---- RegistrationSink -----------------------------------------------------------------------

  upsert(registration: Registration): void {
    const registrations = this.sourceMap(registration.source);
    const previous = registrations.get(registration.key);
    if (previous) this.detach(previous);
    registrations.set(registration.key, registration);
    this.attach(registration);
  }

  remove(source: string, key: string): void {
    const registrations = this.bySource.get(source);
    const previous = registrations?.get(key);
    if (!previous || !registrations) return;
    registrations.delete(key);
    this.detach(previous);
  }

  replaceAll(source: string, registrations: Registration[]): void {
    const current = this.sourceMap(source);
    const next = new Map(registrations.map((r) => [r.key, r]));
    for (const [key, previous] of current) {
      if (!next.has(key)) {
        current.delete(key);
        this.detach(previous);
      }
    }
    for (const registration of next.values()) this.upsert(registration);
  }

  sourceHealth(source: string, health: { reachable: boolean; error?: string }): void {
    const state = this.sourceState(source);
    if (state.reachable === health.reachable && state.error === health.error) return;
    state.reachable = health.reachable;
    state.since = Date.now();
    if (health.error) state.error = health.error;
    else delete state.error;
    for (const registration of this.bySource.get(source)?.values() ?? []) this.markDirty(instanceId(registration));
  }

  /** Forgets a source: its registrations and its health (no replica reads it any more). */
  dropSource(source: string): void {
    for (const registration of this.bySource.get(source)?.values() ?? []) this.detach(registration);
    this.bySource.delete(source);
    this.health.delete(source);
  }

  badInput(source: string, kind: string, detail: string): void {
    const state = this.sourceState(source);
    state.badInput[kind] = (state.badInput[kind] ?? 0) + 1;
    this.options.onBadInput?.(source, kind, detail);
  }

  // ---- reads ----------------------------------------------------------------------------------

  /** Applications sorted by name, optionally filtered, one page at a time. */
  applications(query: { q?: string; sourceKind?: SourceKind; offset?: number; limit?: number } = {}): {
    total: number;
    items: CatalogApplication[];
  } {
    this.flush();
    const q = query.q?.toLowerCase();
    const matches = [...this.byApplication.keys()].sort().flatMap((name) => {
      const summary = this.summary(name);
      if (query.sourceKind && !summary.sourceKinds.includes(query.sourceKind)) return [];
      if (
        q &&
        !name.includes(q) &&
        !this.instancesOf(name).some((i) => i.services.some((s) => s.interface.toLowerCase().includes(q)))
      ) {
        return [];
      }
      return [summary];
    });
    const offset = query.offset ?? 0;
    return { total: matches.length, items: matches.slice(offset, offset + (query.limit ?? 50)) };
  }

  application(name: string): ApplicationDetail | undefined {
    this.flush();
    if (!this.byApplication.has(name)) return undefined;
    const instances = this.instancesOf(name);
    const provided = new Map<string, ProvidedService>();
    const consumed = new Set<string>();
    for (const instance of instances) {
      for (const service of instance.services) {
        if (service.side === 'consumer') {
          consumed.add(service.key);
          continue;
        }
        const entry = provided.get(service.key) ?? {
          key: service.key,
          interface: service.interface,
          group: service.group,
          version: service.version,
          protocols: [],
          methods: [],
          providers: 0,
          consumers: [],
        };
        entry.providers += 1;
        if (!entry.protocols.includes(service.protocol)) entry.protocols.push(service.protocol);
        for (const m of service.methods) if (!entry.methods.includes(m)) entry.methods.push(m);
        provided.set(service.key, entry);
      }
    }
    const consumersByKey = new Map<string, Set<string>>();
    const providersByKey = new Map<string, Set<string>>();
    for (const view of this.views.values()) {
      for (const s of view.services) {
        const index = s.side === 'consumer' ? consumersByKey : providersByKey;
        if (s.side === 'consumer' ? provided.has(s.key) : consumed.has(s.key)) {
          index.set(s.key, (index.get(s.key) ?? new Set()).add(view.application));
        }
      }
    }
    for (const entry of provided.values()) {
      entry.methods.sort();
      entry.consumers = [...(consumersByKey.get(entry.key) ?? [])].sort();
    }
    return {
      ...this.summary(name),
      provides: [...provided.values()].sort((a, b) => a.key.localeCompare(b.key)),
      consumes: [...consumed].sort().map((key) => ({ key, providers: [...(providersByKey.get(key) ?? [])].sort() })),
      instances,
    };
  }

  instances(
    filter: InstanceFilter = {},
    page: { offset?: number; limit?: number } = {},
  ): { total: number; items: CatalogInstance[] } {
    this.flush();
    const ids = filter.application ? [...(this.byApplication.get(filter.application) ?? [])] : [...this.views.keys()];
    const items = ids
      .sort()
      .map((id) => this.views.get(id))
      .filter((i): i is CatalogInstance => i !== undefined)
      .filter(
        (i) =>
          (!filter.source || i.sources.includes(filter.source)) &&
          (!filter.sourceKind || i.sourceKinds.includes(filter.sourceKind)) &&
          (!filter.status || i.status === filter.status) &&
          (!filter.host || i.host === filter.host) &&
          (!filter.kind || i.kind === filter.kind) &&
          (filter.stale === undefined || i.stale === filter.stale),
      );
    const offset = page.offset ?? 0;
    return { total: items.length, items: items.slice(offset, offset + (page.limit ?? 100)) };
  }

  instance(id: string): CatalogInstance | undefined {
    this.flush();
    return this.views.get(id);
  }

  /** The registrations behind an instance (what each source said), for controls and debugging. */
  registrationsOf(id: string): Registration[] {
    return [...(this.byInstance.get(id)?.values() ?? [])];
  }

  sources(): SourceState[] {
    return [...this.health.values()].map((s) => ({
      ...s,
      badInput: { ...s.badInput },
      registrations: this.bySource.get(s.source)?.size ?? 0,
    }));
  }

  size(): { applications: number; instances: number; registrations: number } {
    this.flush();
    let registrations = 0;
    for (const m of this.bySource.values()) registrations += m.size;
    return { applications: this.byApplication.size, instances: this.views.size, registrations };
  }

  /** The sequence number of the last change batch emitted: a stream can resume from it. */
  lastSeq(): number {
    return this.seq;
  }

  subscribe(listener: (changes: CatalogChange[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    clearTimeout(this.timer);
    this.listeners.clear();
  }

  /** Recomputes what changed and tells listeners, in order. Reads call it, so they never lag. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.dirty.size === 0) return;
    const changes: CatalogChange[] = [];
    const at = Date.now();
    for (const id of [...this.dirty].sort()) {
      const before = this.views.get(id);
      const after = this.compute(id);
      if (after) this.views.set(id, after);
      else this.views.delete(id);
      if (!before && after) changes.push({ seq: ++this.seq, type: 'added', at, instance: after });
      else if (before && !after) changes.push({ seq: ++this.seq, type: 'removed', at, instance: before });
      else if (before && after && JSON.stringify(before) !== JSON.stringify(after)) {
        changes.push({ seq: ++this.seq, type: 'updated', at, instance: after });
      }
    }
    this.dirty.clear();
    if (changes.length === 0) return;
    for (const listener of this.listeners) {
      try {
        listener(changes);
      } catch {
        // A failing listener must not stop the catalog or the other listeners.
      }
    }
  }

  // ---- internals ------------------------------------------------------------------------------

  private sourceMap(source: string): Map<string, Registration> {
    let map = this.bySource.get(source);
    if (!map) {
      map = new Map();
      this.bySource.set(source, map);
      this.sourceState(source);
    }
    return map;
  }

  private sourceState(source: string): SourceState {
    let state = this.health.get(source);
    if (!state) {
      state = { source, reachable: true, since: Date.now(), registrations: 0, badInput: {} };
      this.health.set(source, state);
    }
    return state;
  }

  private attach(registration: Registration): void {
    const id = instanceId(registration);
    let merged = this.byInstance.get(id);
    if (!merged) {
      merged = new Map();
      this.byInstance.set(id, merged);
      let app = this.byApplication.get(registration.application);
      if (!app) {
        app = new Set();
        this.byApplication.set(registration.application, app);
      }
      app.add(id);
    }
    merged.set(regId(registration.source, registration.key), registration);
    this.markDirty(id);
  }

  private detach(registration: Registration): void {
    const id = instanceId(registration);
    const merged = this.byInstance.get(id);
    if (!merged) return;
    merged.delete(regId(registration.source, registration.key));
    if (merged.size === 0) {
      this.byInstance.delete(id);
      const app = this.byApplication.get(registration.application);
      app?.delete(id);
      if (app?.size === 0) this.byApplication.delete(registration.application);
    }
    this.markDirty(id);
  }

  private markDirty(id: string): void {
    this.dirty.add(id);
    this.timer ??= setTimeout(() => this.flush(), this.debounceMs);
  }

  private compute(id: string): CatalogInstance | undefined {
    const merged = this.byInstance.get(id);
    if (!merged || merged.size === 0) return undefined;
    const registrations = [...merged.values()].sort((a, b) => a.key.localeCompare(b.key));
    const first = registrations[0]!;
    const sources = [...new Set(registrations.map((r) => r.source))].sort();
    const services = new Map<string, DubboServiceRef>();
    const metadata: Record<string, string> = {};
    let status: InstanceStatus = 'UP';
    let weight = Infinity;
    for (const r of registrations) {
      for (const s of r.services) {
        const key = `${s.side}:${s.key}:${s.protocol}`;
        const known = services.get(key);
        // Interface-level and application-level registrations may both name a service; keep the
        // one that lists methods.
        if (!known || (known.methods.length === 0 && s.methods.length > 0)) services.set(key, s);
      }
      Object.assign(metadata, r.metadata);
      if (STATUS_ORDER.indexOf(r.status) < STATUS_ORDER.indexOf(status)) status = r.status;
      if (r.services.some((s) => s.side === 'provider') || r.kind === 'http') weight = Math.min(weight, r.weight);
    }
    return {
      id,
      application: first.application,
      kind: first.kind,
      host: first.host,
      port: first.port,
      status,
      weight: Number.isFinite(weight) ? weight : first.weight,
      sources,
      sourceKinds: [...new Set(registrations.map((r) => r.sourceKind))].sort(),
      stale: sources.every((s) => this.health.get(s)?.reachable === false),
      services: [...services.values()].sort((a, b) => `${a.side}${a.key}`.localeCompare(`${b.side}${b.key}`)),
      metadata,
      registrations: registrations.length,
    };
  }

  private instancesOf(application: string): CatalogInstance[] {
    return [...(this.byApplication.get(application) ?? [])]
      .sort()
      .map((id) => this.views.get(id))
      .filter((i): i is CatalogInstance => i !== undefined);
  }

  private summary(name: string): CatalogApplication {
    const instances = this.instancesOf(name);
    const statusCounts: Partial<Record<InstanceStatus, number>> = {};
    const kinds = new Set<SourceKind>();
    const provided = new Set<string>();
    for (const i of instances) {
      statusCounts[i.status] = (statusCounts[i.status] ?? 0) + 1;
      for (const k of i.sourceKinds) kinds.add(k);
      for (const s of i.services) if (s.side === 'provider') provided.add(s.key);
    }
    return {
      name,
      sourceKinds: [...kinds].sort(),
      instanceCount: instances.length,
      dubboInstances: instances.filter((i) => i.kind === 'dubbo').length,
      httpInstances: instances.filter((i) => i.kind === 'http').length,
      statusCounts,
      services: provided.size,
      stale: instances.length > 0 && instances.every((i) => i.stale),
    };
  }
}
