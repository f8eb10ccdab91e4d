import zookeeper from 'node-zookeeper-client';
import type { DubboServiceRef, Registration, RegistrationSink, RegistrySource, SourceLogger } from '../registration.js';
import { BadInstanceData, parseInstanceData, serviceFromDefinition, servicesFromMetadataInfo } from './dubbo-instance.js';
import { BadDubboUrl, ENCODED_URL_MARK, registrationFromZnode, serviceKey } from './dubbo-url.js';
import { isNoNode, zkError } from './zk-errors.js';

export interface ZookeeperDubboSourceOptions {
  /** ZooKeeper connect string, `host:port[,host:port…][/chroot]`. */
  connect: string;
  /** Interface-level roots (Dubbo's registry `group`), without slashes. Default `['dubbo']`. */
  roots?: string[];
  /** Root of Dubbo 3 application-level instances. Default `services`. */
  servicesRoot?: string;
  sessionTimeoutMs?: number;
  /** Reads in flight at once, during a resync and after. */
  concurrency?: number;
  /** A watched folder is re-read at most this often; changes in between are coalesced. */
  coalesceMs?: number;
  logger?: SourceLogger;
}

/** What the source has done, for tests, the benchmark and metrics. */
export interface ZookeeperSourceStats {
  childrenReads: number;
  childrenListed: number;
  dataReads: number;
  resyncs: number;
  sessions: number;
}

type Category = 'providers' | 'consumers';
/** An instance's services, and whether they come from its revision's own (immutable) report. */
type ResolvedServices = { services: DubboServiceRef[]; fromReport: boolean };
const CATEGORIES: Category[] = ['providers', 'consumers'];
/** Children of a root that are Dubbo's own folders, not interfaces. */
const RESERVED = new Set(['config', 'mapping', 'metadata']);

class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active += 1;
    try {
      return await task();
    } finally {
      this.active -= 1;
      this.waiting.shift()?.();
    }
  }
}

/**
 * Reads Dubbo registrations from ZooKeeper, driven by watches:
 *
 * - `/<root>/<interface>/providers|consumers/<encoded URL>` (Dubbo 2.7 and Dubbo 3 `register-mode`
 *   all/interface), for each configured root;
 * - `/<servicesRoot>/<app>/<ip:port>` (Dubbo 3 application level, and Spring Cloud Zookeeper), with
 *   the services of an instance from the metadata report of its revision, else from the
 *   interface→application mapping and the service definitions.
 *
 * A folder is read once and then again only when its one-shot watch fires (the read re-arms it);
 * reads of one folder are coalesced, so a burst of N registrations costs a few reads, not N (the
 * read storm large Dubbo estates hit). After a session expiry the whole tree is read again with
 * bounded concurrency and handed over with `replaceAll`, so the catalog never passes through empty.
 */
export class ZookeeperDubboSource implements RegistrySource {
  readonly id: string;
  private readonly roots: string[];
  private readonly servicesRoot: string;
  private readonly limiter: Limiter;
  private readonly coalesceMs: number;
  private readonly sessionTimeoutMs: number;

  private sink?: RegistrationSink;
  private client?: zookeeper.Client;
  /** Bumped for every new client: callbacks of an older session are ignored. */
  private generation = 0;
  private stopped = true;
  private reachable: boolean | undefined;
  private unreachableTimer?: NodeJS.Timeout;

  /** Last children read per watched folder. */
  private readonly folders = new Map<string, Set<string>>();
  private readonly scheduled = new Map<string, NodeJS.Timeout>();
  /** During a resync, registrations are collected here and handed over at once. */
  private buffer?: Map<string, Registration>;
  /** Keys reported to the sink (or buffered): removals of unknown keys are not sent. */
  private readonly known = new Set<string>();
  private readonly servicesByRevision = new Map<string, Promise<ResolvedServices>>();
  /** The interface→applications mapping, kept current by watches once it was needed. */
  private readonly mappingByInterface = new Map<string, Set<string>>();
  private mappingRead?: { generation: number; done: Promise<void> };
  private readonly reportedBad = new Set<string>();
  /** Application-level instances whose services came from the mapping, and how often we looked. */
  private readonly lookups = new Map<string, number>();
  readonly stats: ZookeeperSourceStats = { childrenReads: 0, childrenListed: 0, dataReads: 0, resyncs: 0, sessions: 0 };

  constructor(private readonly options: ZookeeperDubboSourceOptions) {
    this.id = `zookeeper:${options.connect}`;
    this.roots = (options.roots ?? ['dubbo']).map((r) => r.replace(/^\/+|\/+$/g, ''));
    this.servicesRoot = (options.servicesRoot ?? 'services').replace(/^\/+|\/+$/g, '');
    this.limiter = new Limiter(options.concurrency ?? 32);
    this.coalesceMs = options.coalesceMs ?? 25;
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? 30_000;
  }

  start(sink: RegistrationSink): Promise<void> {
    this.sink = sink;
    this.stopped = false;
    this.openSession();
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.generation += 1;
    for (const timer of this.scheduled.values()) clearTimeout(timer);
    this.scheduled.clear();
    clearTimeout(this.unreachableTimer);
    this.client?.close();
    this.client = undefined;
    return Promise.resolve();
  }

  // ---- session --------------------------------------------------------------------------------

  private openSession(): void {
    const generation = ++this.generation;
    this.client?.close();
    const client = zookeeper.createClient(this.options.connect, {
      sessionTimeout: this.sessionTimeoutMs,
      spinDelay: 500,
      retries: 0,
    });
    this.client = client;
    this.stats.sessions += 1;
    let synced = false;
    client.on('state', (state: zookeeper.State) => {
      if (generation !== this.generation) return;
      if (state === zookeeper.State.SYNC_CONNECTED) {
        clearTimeout(this.unreachableTimer);
        this.setReachable(true);
        if (!synced) {
          synced = true;
          void this.resync(generation);
        }
      } else if (state === zookeeper.State.DISCONNECTED) {
        // The client reconnects by itself and re-registers our watches; until then we are stale.
        this.setReachable(false, 'disconnected from ZooKeeper');
        // Like Curator: cut off for longer than the session timeout, the session is as good as
        // lost. A replaced server would even refuse the old client (it has seen a newer zxid), so
        // start afresh rather than wait forever.
        clearTimeout(this.unreachableTimer);
        this.unreachableTimer = setTimeout(() => {
          if (generation !== this.generation || client.getState() === zookeeper.State.SYNC_CONNECTED) return;
          this.options.logger?.warn({ source: this.id }, 'ZooKeeper unreachable beyond the session timeout: new session');
          this.openSession();
        }, this.sessionTimeoutMs);
        this.unreachableTimer.unref();
      } else if (state === zookeeper.State.EXPIRED) {
        this.options.logger?.warn({ source: this.id }, 'ZooKeeper session expired: new session and full resync');
        this.setReachable(false, 'session expired');
        this.openSession();
      }
    });
    // Until the first connection, the registry counts as unreachable after one session timeout.
    clearTimeout(this.unreachableTimer);
    this.unreachableTimer = setTimeout(
      () => {
        if (generation === this.generation && client.getState() !== zookeeper.State.SYNC_CONNECTED) {
          this.setReachable(false, `no ZooKeeper session within ${this.sessionTimeoutMs} ms`);
        }
      },
      Math.min(this.sessionTimeoutMs, 10_000),
    );
    this.unreachableTimer.unref();
    client.connect();
  }

  private setReachable(reachable: boolean, error?: string): void {
    if (this.reachable === reachable) return;
    this.reachable = reachable;
    this.sink?.sourceHealth(this.id, reachable ? { reachable } : { reachable, ...(error ? { error } : {}) });
  }

  /** Reads the whole tree (arming every watch) and hands the result over in one piece. */
  private async resync(generation: number): Promise<void> {
    this.stats.resyncs += 1;
    for (const timer of this.scheduled.values()) clearTimeout(timer);
    this.scheduled.clear();
    this.folders.clear();
    this.mappingByInterface.clear();
    this.buffer = new Map();
    const started = Date.now();
    try {
      await Promise.all([...this.roots.map((root) => this.readRoot(generation, root)), this.readServicesRoot(generation)]);
    } catch (error) {
      if (generation === this.generation) {
        this.options.logger?.error({ source: this.id, error: (error as Error).message }, 'ZooKeeper resync failed; retrying');
        this.buffer = undefined;
        setTimeout(() => generation === this.generation && void this.resync(generation), 1_000).unref();
      }
      return;
    }
    if (generation !== this.generation) return;
    const registrations = [...this.buffer.values()];
    this.buffer = undefined;
    this.known.clear();
    for (const r of registrations) this.known.add(r.key);
    this.sink?.replaceAll(this.id, registrations);
    this.options.logger?.info(
      { source: this.id, registrations: registrations.length, ms: Date.now() - started },
      'ZooKeeper registry synchronised',
    );
  }

  // ---- reads ----------------------------------------------------------------------------------

  private watcher(generation: number, path: string, reread: () => Promise<void>) {
    return () => {
      if (generation !== this.generation || this.stopped || this.scheduled.has(path)) return;
      this.scheduled.set(
        path,
        setTimeout(() => {
          this.scheduled.delete(path);
          if (generation === this.generation)
            void reread().catch((error: unknown) => this.retryLater(generation, path, reread, error));
        }, this.coalesceMs),
      );
    };
  }

  private retryLater(generation: number, path: string, reread: () => Promise<void>, error: unknown): void {
    if (generation !== this.generation || this.stopped) return;
    this.options.logger?.warn({ source: this.id, path, error: (error as Error).message }, 'ZooKeeper read failed; retrying');
    setTimeout(
      () => generation === this.generation && void reread().catch((e: unknown) => this.retryLater(generation, path, reread, e)),
      1_000,
    ).unref();
  }

  /** Children of `path`, re-read when they change; `undefined` when the node does not exist (yet). */
  private children(generation: number, path: string, reread: () => Promise<void>): Promise<string[] | undefined> {
    const client = this.client;
    if (!client) return Promise.resolve(undefined);
    return this.limiter.run(
      () =>
        new Promise<string[] | undefined>((resolve, reject) => {
          this.stats.childrenReads += 1;
          client.getChildren(path, this.watcher(generation, path, reread), (error, names) => {
            if (!error) {
              this.stats.childrenListed += names.length;
              return resolve(names);
            }
            if (!isNoNode(error)) return reject(zkError(error));
            // Not there: watch for its creation instead.
            client.exists(path, this.watcher(generation, path, reread), (existsError, stat) => {
              if (existsError) reject(zkError(existsError));
              else if (stat) this.watcher(generation, path, reread)(); // created meanwhile
              resolve(undefined);
            });
          });
        }),
    );
  }

  private data(generation: number, path: string, reread?: () => Promise<void>): Promise<Buffer | undefined> {
    const client = this.client;
    if (!client) return Promise.resolve(undefined);
    return this.limiter.run(
      () =>
        new Promise<Buffer | undefined>((resolve, reject) => {
          this.stats.dataReads += 1;
          const callback = (error: unknown, data: Buffer | undefined) => {
            if (!error) return resolve(data);
            if (isNoNode(error)) return resolve(undefined);
            reject(zkError(error));
          };
          if (reread) client.getData(path, this.watcher(generation, path, reread), callback);
          else client.getData(path, callback);
        }),
    );
  }

  /** Diffs a folder's new children against the last read; returns the added and removed names. */
  private diff(path: string, names: string[] | undefined): { added: string[]; removed: string[] } {
    const before = this.folders.get(path) ?? new Set<string>();
    const after = new Set(names ?? []);
    if (names === undefined) this.folders.delete(path);
    else this.folders.set(path, after);
    return {
      added: [...after].filter((n) => !before.has(n)),
      removed: [...before].filter((n) => !after.has(n)),
    };
  }

  /** Forgets a folder and everything read below it (its parent's child disappeared). */
  private forget(prefix: string): void {
    for (const path of [...this.folders.keys()]) if (path === prefix || path.startsWith(`${prefix}/`)) this.folders.delete(path);
    for (const key of [...this.known]) if (key.startsWith(`${prefix}/`)) this.emitRemove(key);
    if (this.buffer) for (const key of [...this.buffer.keys()]) if (key.startsWith(`${prefix}/`)) this.buffer.delete(key);
  }

  // Interface level: /<root> → interfaces → providers|consumers → URLs.

  private async readRoot(generation: number, root: string): Promise<void> {
    const path = `/${root}`;
    const names = await this.children(generation, path, () => this.readRoot(generation, root));
    if (generation !== this.generation) return;
    const { added, removed } = this.diff(path, names);
    for (const iface of removed) this.forget(`${path}/${iface}`);
    await Promise.all(
      added
        .filter((iface) => !RESERVED.has(iface))
        .flatMap((iface) => CATEGORIES.map((category) => this.readCategory(generation, root, iface, category))),
    );
  }

  private async readCategory(generation: number, root: string, iface: string, category: Category): Promise<void> {
    const path = `/${root}/${iface}/${category}`;
    const names = await this.children(generation, path, () => this.readCategory(generation, root, iface, category));
    if (generation !== this.generation) return;
    const { added, removed } = this.diff(path, names);
    for (const name of removed) this.emitRemove(`${path}/${name}`);
    for (const name of added) {
      if (!name.includes(ENCODED_URL_MARK)) continue; // not a registration (Dubbo ignores these too)
      try {
        this.emitUpsert(registrationFromZnode(this.id, { path, interface: iface, category }, name));
      } catch (error) {
        if (!(error instanceof BadDubboUrl)) throw error;
        this.reportBad('dubbo-url', `${path}/${name.slice(0, 200)}: ${error.message}`);
      }
    }
  }

  // Application level: /services → apps → instances (data: Curator JSON).

  private async readServicesRoot(generation: number): Promise<void> {
    const path = `/${this.servicesRoot}`;
    const names = await this.children(generation, path, () => this.readServicesRoot(generation));
    if (generation !== this.generation) return;
    const { added, removed } = this.diff(path, names);
    for (const app of removed) this.forget(`${path}/${app}`);
    await Promise.all(added.map((app) => this.readApplication(generation, app)));
  }

  private async readApplication(generation: number, app: string): Promise<void> {
    const path = `/${this.servicesRoot}/${app}`;
    const names = await this.children(generation, path, () => this.readApplication(generation, app));
    if (generation !== this.generation) return;
    const { added, removed } = this.diff(path, names);
    for (const id of removed) this.emitRemove(`${path}/${id}`);
    await Promise.all(added.map((id) => this.readInstance(generation, app, `${path}/${id}`)));
  }

  private async readInstance(generation: number, app: string, path: string): Promise<void> {
    const data = await this.data(generation, path, () => this.readInstance(generation, app, path));
    if (generation !== this.generation || data === undefined) return; // gone: the folder's watch removes it
    let parsed;
    try {
      parsed = parseInstanceData(this.id, path, app, data);
    } catch (error) {
      if (!(error instanceof BadInstanceData)) throw error;
      this.reportBad('dubbo-instance', `${path}: ${error.message}`);
      this.emitRemove(path);
      return;
    }
    const { registration, revision } = parsed;
    let settled = true;
    if (registration.kind === 'dubbo') {
      const resolved = await this.servicesOf(generation, registration.application, revision);
      registration.services = resolved.services;
      settled = resolved.fromReport;
    }
    const slash = path.lastIndexOf('/');
    // Removed while its services were being resolved: the folder's read already dropped it.
    if (generation !== this.generation || !this.folders.get(path.slice(0, slash))?.has(path.slice(slash + 1))) return;
    this.emitUpsert(registration);
    // A new provider writes its mapping and service definitions one by one after its instance,
    // and nothing watches them: what came from there is looked at again a few times.
    const tries = this.lookups.get(path) ?? 0;
    if (!settled && tries < 6) {
      this.lookups.set(path, tries + 1);
      setTimeout(
        () => generation === this.generation && void this.readInstance(generation, app, path).catch(() => undefined),
        2_000 * (tries + 1),
      ).unref();
    } else {
      this.lookups.delete(path);
    }
  }

  // Services of an application-level instance.

  private servicesOf(generation: number, app: string, revision: string | undefined): Promise<ResolvedServices> {
    const cacheKey = `${app}@${revision ?? ''}`;
    let resolved = this.servicesByRevision.get(cacheKey);
    if (!resolved) {
      resolved = this.resolveServices(generation, app, revision).catch((error: unknown) => {
        this.reportBad('dubbo-metadata', `${app}@${revision ?? '-'}: ${(error as Error).message}`);
        return { services: [], fromReport: false };
      });
      this.servicesByRevision.set(cacheKey, resolved);
      // Only a revision's own metadata report is immutable; what the mapping said is read again.
      void resolved.then(({ fromReport }) => {
        if (!fromReport) setTimeout(() => this.servicesByRevision.delete(cacheKey), 1_000).unref();
      });
    }
    return resolved;
  }

  private async resolveServices(generation: number, app: string, revision: string | undefined): Promise<ResolvedServices> {
    const root = this.roots[0] ?? 'dubbo';
    if (revision) {
      const report = await this.data(generation, `/${root}/metadata/${app}/${revision}`);
      if (report) {
        try {
          return { services: servicesFromMetadataInfo(report), fromReport: true };
        } catch (error) {
          if (!(error instanceof BadInstanceData)) throw error;
          this.reportBad('dubbo-metadata', `/${root}/metadata/${app}/${revision}: ${error.message}`);
        }
      }
    }
    const interfaces = [...((await this.mappingOf(generation, root)).get(app) ?? [])];
    const found = await Promise.all(interfaces.map((iface) => this.definitionsOf(generation, root, iface, app)));
    const services: DubboServiceRef[] = found.flat().flatMap(({ iface, path, data }) => {
      try {
        const { methods, group, version } = serviceFromDefinition(data);
        return [
          {
            key: serviceKey(iface, group, version),
            interface: iface,
            group,
            version,
            protocol: 'dubbo',
            methods,
            side: 'provider' as const,
          },
        ];
      } catch (error) {
        if (!(error instanceof BadInstanceData)) throw error;
        this.reportBad('dubbo-metadata', `${path}: ${error.message}`);
        return [];
      }
    });
    return { services, fromReport: false };
  }

  /** Service definitions an application wrote for an interface, under `[/<version>][/<group>]`. */
  private async definitionsOf(generation: number, root: string, iface: string, app: string) {
    const found: { iface: string; path: string; data: Buffer }[] = [];
    let level = [`/${root}/metadata/${iface}`];
    for (let depth = 0; depth < 3 && level.length > 0; depth++) {
      const next: string[] = [];
      for (const path of level) {
        const names = await this.limiter.run(
          () =>
            new Promise<string[]>((resolve) =>
              this.client ? this.client.getChildren(path, (error, children) => resolve(error ? [] : children)) : resolve([]),
            ),
        );
        for (const name of names) {
          if (name === 'provider') {
            const data = await this.data(generation, `${path}/provider/${app}`);
            if (data) found.push({ iface, path: `${path}/provider/${app}`, data });
          } else if (name !== 'consumer') next.push(`${path}/${name}`);
        }
      }
      level = next;
    }
    return found;
  }

  /**
   * `/<root>/mapping/<interface>` (data: comma-separated applications), followed by watches like
   * the registrations, so the interfaces of an application are known without re-reading the
   * mapping. Read on first need: estates without application-level-only apps never pay for it.
   */
  private async mappingOf(generation: number, root: string): Promise<Map<string, Set<string>>> {
    if (!this.mappingRead || this.mappingRead.generation !== generation) {
      this.mappingRead = { generation, done: this.readMappingRoot(generation, root) };
    }
    await this.mappingRead.done;
    const byApp = new Map<string, Set<string>>();
    for (const [iface, apps] of this.mappingByInterface) {
      for (const app of apps) byApp.set(app, (byApp.get(app) ?? new Set()).add(iface));
    }
    return byApp;
  }

  private async readMappingRoot(generation: number, root: string): Promise<void> {
    const path = `/${root}/mapping`;
    const names = await this.children(generation, path, () => this.readMappingRoot(generation, root));
    if (generation !== this.generation) return;
    const { added, removed } = this.diff(path, names);
    for (const iface of removed) this.mappingByInterface.delete(iface);
    await Promise.all(added.map((iface) => this.readMappingNode(generation, root, iface)));
  }

  private async readMappingNode(generation: number, root: string, iface: string): Promise<void> {
    const data = await this.data(generation, `/${root}/mapping/${iface}`, () => this.readMappingNode(generation, root, iface));
    if (generation !== this.generation) return;
    const apps = (data?.toString('utf8') ?? '')
      .split(',')
      .map((a) => a.trim().toLowerCase())
      .filter(Boolean);
    this.mappingByInterface.set(iface, new Set(apps));
  }

  // ---- output ---------------------------------------------------------------------------------

  private emitUpsert(registration: Registration): void {
    this.known.add(registration.key);
    if (this.buffer) this.buffer.set(registration.key, registration);
    else this.sink?.upsert(registration);
  }

  private emitRemove(key: string): void {
    if (this.buffer) {
      this.buffer.delete(key);
      return;
    }
    if (this.known.delete(key)) this.sink?.remove(this.id, key);
  }

  private reportBad(kind: string, detail: string): void {
    this.sink?.badInput(this.id, kind, detail);
    if (this.reportedBad.has(kind)) return;
    this.reportedBad.add(kind);
    this.options.logger?.warn({ source: this.id, kind, detail }, 'skipped unreadable registry data (logged once per kind)');
  }
}
