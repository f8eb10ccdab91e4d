import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * The server's whole configuration, read once from the environment at start. Every variable is
 * checked in one pass so an operator sees all mistakes at once, not one per restart.
 */

const hostPort = /^[A-Za-z0-9._-]+:\d{1,5}$/;

function list(value: string): string[] {
  return value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
}

function validPort(entry: string): boolean {
  const port = Number(entry.slice(entry.lastIndexOf(':') + 1));
  return port >= 1 && port <= 65535;
}

const hostPortList = z
  .string()
  .transform(list)
  .refine((entries) => entries.length > 0, 'must name at least one host:port')
  .refine(
    (entries) => entries.every((e) => hostPort.test(e) && validPort(e)),
    'must be a comma-separated list of host:port (port 1-65535)',
  );

const millis = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const kafkaTopic = z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, 'a Kafka topic name: letters, digits, . _ - (at most 249)');

export const ENV_SCHEMA = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: z.coerce.number().int().min(1).max(65535).default(3000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  READINESS_TIMEOUT_MS: millis(100, 60_000).default(2_000),
  SHUTDOWN_DRAIN_MS: millis(0, 120_000).default(0),
  SHUTDOWN_TIMEOUT_MS: millis(1_000, 300_000).default(15_000),
  MONGODB_URI: z.string().regex(/^mongodb(\+srv)?:\/\/[^/]+/, 'must be a mongodb:// or mongodb+srv:// connection string'),
  KAFKA_BROKERS: hostPortList,
  KAFKA_CLIENT_ID: z.string().min(1).default('steward'),
  // Where agents' statistics and call records travel between the ingest and the aggregator.
  STATS_TOPIC: kafkaTopic.default('steward.stats.v1'),
  // Where aggregators publish the live seconds every server's dashboards and live stream show.
  LIVE_TOPIC: kafkaTopic.default('steward.live.v1'),
  // Where rule commits travel between replicas (docs/operations.md, "Several replicas").
  RULES_TOPIC: kafkaTopic.default('steward.rules.v1'),
  // Where replicas tell each other of their agents' sessions (the cluster-wide agents view).
  AGENTS_TOPIC: kafkaTopic.default('steward.agents.v1'),
  // Whether this server runs the stats aggregator (a consumer group member); `off` when it runs as
  // its own process (`npm run stats:aggregator`).
  STATS_AGGREGATOR: z.enum(['on', 'off']).default('on'),
  // A ZooKeeper connect string, optionally with a chroot: host1:2181,host2:2181/chroot.
  ZOOKEEPER_CONNECT: z
    .string()
    .refine((value) => {
      const slash = value.indexOf('/');
      const hosts = list(slash === -1 ? value : value.slice(0, slash));
      return hosts.length > 0 && hosts.every((e) => hostPort.test(e) && validPort(e));
    }, 'must be host:port[,host:port...][/chroot]')
    .optional(),
  ZOOKEEPER_DUBBO_ROOTS: z
    .string()
    .transform(list)
    .refine(
      (roots) => roots.length > 0 && roots.every((r) => /^[A-Za-z0-9._-]+$/.test(r)),
      'must be a comma-separated list of znode names such as dubbo',
    )
    .default(['dubbo']),
  ZOOKEEPER_SESSION_TIMEOUT_MS: millis(2_000, 120_000).default(30_000),
  EUREKA_FETCH_INTERVAL_MS: millis(1_000, 600_000).default(30_000),
  REGISTRY_DEBOUNCE_MS: millis(0, 10_000).default(100),
  // How replicas share the registry reading (docs/registry-bridge.md, "Several replicas"): `leader`,
  // one elected replica reads the registries and the others follow through Kafka; `always`, every
  // replica reads them itself.
  REGISTRY_BRIDGE_MODE: z.enum(['leader', 'always']).default('leader'),
  // Unset: derived from the registry configuration (registryFingerprint), so that servers reading
  // different registries never share an election or a catalog.
  REGISTRY_BRIDGE_GROUP: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,200}$/, 'a Kafka consumer group id: letters, digits, . _ - (at most 200)')
    .optional(),
  REGISTRY_BRIDGE_LEASE_TOPIC: kafkaTopic.default('steward.bridge.lease.v1'),
  REGISTRY_CATALOG_TOPIC: kafkaTopic.optional(),
  REGISTRY_BRIDGE_SESSION_TIMEOUT_MS: millis(1_000, 300_000).default(10_000),
  // A replica that has been neither leader nor follower this long (Kafka away) reads the registries itself.
  REGISTRY_BRIDGE_FALLBACK_MS: millis(1_000, 3_600_000).default(30_000),
  AGENT_HEARTBEAT_MS: millis(1_000, 300_000).default(10_000),
  // How often rule-set revisions are read back for applications with agents: catches writes made
  // by other replicas or directly in the database.
  AGENT_REVISION_POLL_MS: millis(100, 600_000).default(2_000),
  AGENT_MAX_FRAME_BYTES: z.coerce.number().int().min(1_024).max(16_777_216).default(1_048_576),
  // The first admin's token; later tokens are issued through the API and stored hashed.
  ADMIN_TOKEN: z.string().min(24, 'must be at least 24 characters').max(512).optional(),
  // Where the dashboard's built front end is served from; unset: dist/web of this installation
  // (what `npm run build:web` writes). A relative path is taken from the working directory.
  WEB_ROOT: z.string().min(1).max(4_096).optional(),
  EUREKA_URLS: z
    .string()
    .transform(list)
    .refine((urls) => urls.length > 0, 'must name at least one URL')
    .refine(
      (urls) => urls.every((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol)),
      'must be a comma-separated list of http(s) URLs such as http://127.0.0.1:8761/eureka',
    )
    .optional(),
});

export interface AppConfig {
  env: 'development' | 'test' | 'production';
  http: { host: string; port: number };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readinessTimeoutMs: number;
  shutdown: { drainMs: number; timeoutMs: number };
  mongodb: { uri: string };
  kafka: { brokers: string[]; clientId: string };
  stats: { topic: string; aggregator: boolean; liveTopic: string };
  rules: { topic: string };
  /** Absent when this deployment reads no ZooKeeper registry. */
  zookeeper: { connect: string; dubboRoots: string[]; sessionTimeoutMs: number } | null;
  /** Absent when this deployment reads no Eureka registry. */
  eureka: { urls: string[]; fetchIntervalMs: number } | null;
  registry: {
    debounceMs: number;
    /** Who reads the registries among the replicas (src/registry-bridge/registry-bridge.service.ts). */
    bridge: {
      mode: 'leader' | 'always';
      group: string;
      leaseTopic: string;
      catalogTopic: string;
      sessionTimeoutMs: number;
      fallbackMs: number;
    };
  };
  auth: { adminToken?: string };
  agents: { heartbeatMs: number; revisionPollMs: number; maxFrameBytes: number; topic: string };
  /** The dashboard's static files; absent: dist/web of this installation (src/dashboard/static-ui.ts). */
  web?: { root: string };
}

export type ConfigResult = { ok: true; config: AppConfig } | { ok: false; errors: string[] };

/** Parses the environment; empty variables count as unset. */
export function parseConfig(env: NodeJS.ProcessEnv): ConfigResult {
  const present: Record<string, string> = {};
  for (const key of Object.keys(ENV_SCHEMA.shape)) {
    const value = env[key];
    if (value !== undefined && value.trim() !== '') present[key] = value.trim();
  }
  const parsed = ENV_SCHEMA.safeParse(present);
  if (!parsed.success) {
    const errors = parsed.error.issues.map((issue) => {
      const name = issue.path.join('.');
      return present[name] === undefined ? `${name}: is required` : `${name}: ${issue.message}`;
    });
    return { ok: false, errors: [...new Set(errors)].sort() };
  }
  const e = parsed.data;
  const zookeeper = e.ZOOKEEPER_CONNECT
    ? { connect: e.ZOOKEEPER_CONNECT, dubboRoots: e.ZOOKEEPER_DUBBO_ROOTS, sessionTimeoutMs: e.ZOOKEEPER_SESSION_TIMEOUT_MS }
    : null;
  const eureka = e.EUREKA_URLS ? { urls: e.EUREKA_URLS, fetchIntervalMs: e.EUREKA_FETCH_INTERVAL_MS } : null;
  const fingerprint = registryFingerprint(zookeeper, eureka);
  return {
    ok: true,
    config: {
      env: e.NODE_ENV,
      http: { host: e.HOST, port: e.PORT },
      logLevel: e.LOG_LEVEL,
      readinessTimeoutMs: e.READINESS_TIMEOUT_MS,
      shutdown: { drainMs: e.SHUTDOWN_DRAIN_MS, timeoutMs: e.SHUTDOWN_TIMEOUT_MS },
      mongodb: { uri: e.MONGODB_URI },
      kafka: { brokers: e.KAFKA_BROKERS, clientId: e.KAFKA_CLIENT_ID },
      stats: { topic: e.STATS_TOPIC, aggregator: e.STATS_AGGREGATOR === 'on', liveTopic: e.LIVE_TOPIC },
      rules: { topic: e.RULES_TOPIC },
      zookeeper,
      eureka,
      registry: {
        debounceMs: e.REGISTRY_DEBOUNCE_MS,
        bridge: {
          mode: e.REGISTRY_BRIDGE_MODE,
          group: e.REGISTRY_BRIDGE_GROUP ?? `steward-bridge.${fingerprint}`,
          leaseTopic: e.REGISTRY_BRIDGE_LEASE_TOPIC,
          catalogTopic: e.REGISTRY_CATALOG_TOPIC ?? `steward.catalog.v1.${fingerprint}`,
          sessionTimeoutMs: e.REGISTRY_BRIDGE_SESSION_TIMEOUT_MS,
          fallbackMs: e.REGISTRY_BRIDGE_FALLBACK_MS,
        },
      },
      auth: e.ADMIN_TOKEN ? { adminToken: e.ADMIN_TOKEN } : {},
      agents: {
        heartbeatMs: e.AGENT_HEARTBEAT_MS,
        revisionPollMs: e.AGENT_REVISION_POLL_MS,
        maxFrameBytes: e.AGENT_MAX_FRAME_BYTES,
        topic: e.AGENTS_TOPIC,
      },
      ...(e.WEB_ROOT ? { web: { root: e.WEB_ROOT } } : {}),
    },
  };
}

/**
 * Eight hex digits naming what the registry bridge reads and how: replicas share a bridge election
 * and a catalog topic only when they would read the same registrations (a server started with
 * other ZooKeeper roots or another Eureka must not follow, nor overwrite, this one's catalog).
 */
export function registryFingerprint(zookeeper: AppConfig['zookeeper'], eureka: AppConfig['eureka']): string {
  const reads = {
    zookeeper: zookeeper && {
      connect: zookeeper.connect,
      roots: zookeeper.dubboRoots,
      sessionTimeoutMs: zookeeper.sessionTimeoutMs,
    },
    eureka: eureka && { urls: [...eureka.urls].sort(), fetchIntervalMs: eureka.fetchIntervalMs },
  };
  return createHash('sha256').update(JSON.stringify(reads)).digest('hex').slice(0, 8);
}
