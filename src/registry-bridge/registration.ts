/**
 * What a registry source reports: a flat set of registrations, each with a key unique within its
 * source. The catalog (catalog.ts) folds them into applications, services and instances. Sources
 * know their registry's format; the catalog knows neither.
 */

export type SourceKind = 'zookeeper' | 'eureka';

/** UP / DOWN / OUT_OF_SERVICE / STARTING / UNKNOWN come from Eureka; DISABLED from Dubbo overrides. */
export type InstanceStatus = 'UP' | 'DOWN' | 'OUT_OF_SERVICE' | 'STARTING' | 'UNKNOWN' | 'DISABLED';

/** One Dubbo service as a registration names it. `key` follows Dubbo: `group/interface:version`. */
export interface DubboServiceRef {
  key: string;
  interface: string;
  group: string;
  version: string;
  protocol: string;
  methods: string[];
  side: 'provider' | 'consumer';
}

export interface Registration {
  /** Unique within the source, stable for the life of the registration (e.g. the znode path). */
  key: string;
  /** Which source instance reported it, e.g. `zookeeper:127.0.0.1:2181` or `eureka`. */
  source: string;
  sourceKind: SourceKind;
  /** Logical application name, lower-cased (Eureka upper-cases it; Dubbo keeps it as written). */
  application: string;
  /** `dubbo` for an RPC endpoint (interface- or application-level), `http` for a Eureka instance. */
  kind: 'dubbo' | 'http';
  host: string;
  port: number;
  status: InstanceStatus;
  /** Load-balancing weight; Dubbo's default is 100, Eureka has none (100). */
  weight: number;
  /** Dubbo services this registration declares (interface-level: one; application-level: all). */
  services: DubboServiceRef[];
  /** Remaining parameters or metadata, as strings. */
  metadata: Record<string, string>;
  /** Registration or last-change time in ms since the epoch, when the registry says. */
  timestamp?: number;
}

/** What a source tells the catalog. Calls for one source arrive in order. */
export interface RegistrationSink {
  upsert(registration: Registration): void;
  remove(source: string, key: string): void;
  /** Replaces everything the source reported before (after a full fetch or a resync). */
  replaceAll(source: string, registrations: Registration[]): void;
  /** A source that cannot reach its registry is stale: its entries are kept and marked so. */
  sourceHealth(source: string, health: { reachable: boolean; error?: string }): void;
  /** A piece of registry data the source could not read; it was skipped. */
  badInput(source: string, kind: string, detail: string): void;
}

/** A registry reader: the port behind which ZooKeeper and Eureka adapters live. */
export interface RegistrySource {
  readonly id: string;
  /** Counters of the source's own work (reads, fetches, resyncs), shown with its health. */
  readonly stats: object;
  start(sink: RegistrationSink): Promise<void>;
  stop(): Promise<void>;
}

/** The little a source needs to log; a pino logger fits. */
export interface SourceLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
  error(details: object, message: string): void;
}
