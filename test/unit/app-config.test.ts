import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/app-config.js';

const required = { MONGODB_URI: 'mongodb://127.0.0.1:27017/steward', KAFKA_BROKERS: '127.0.0.1:9092' };

function errorsOf(env: Record<string, string>): string[] {
  const result = parseConfig(env);
  if (result.ok) throw new Error('expected the configuration to be rejected');
  return result.errors;
}

describe('parseConfig', () => {
  it('applies defaults when only the required variables are set', () => {
    const result = parseConfig(required);
    expect(result).toEqual({
      ok: true,
      config: {
        env: 'development',
        http: { host: '127.0.0.1', port: 3000 },
        logLevel: 'info',
        readinessTimeoutMs: 2000,
        shutdown: { drainMs: 0, timeoutMs: 15000 },
        mongodb: { uri: 'mongodb://127.0.0.1:27017/steward' },
        kafka: { brokers: ['127.0.0.1:9092'], clientId: 'steward' },
        stats: { topic: 'steward.stats.v1', aggregator: true, liveTopic: 'steward.live.v1' },
        rules: { topic: 'steward.rules.v1' },
        zookeeper: null,
        eureka: null,
        registry: {
          debounceMs: 100,
          bridge: {
            mode: 'leader',
            group: 'steward-bridge.4300c8a3',
            leaseTopic: 'steward.bridge.lease.v1',
            catalogTopic: 'steward.catalog.v1.4300c8a3',
            sessionTimeoutMs: 10000,
            fallbackMs: 30000,
          },
        },
        auth: {},
        agents: { heartbeatMs: 10000, revisionPollMs: 2000, maxFrameBytes: 1048576, topic: 'steward.agents.v1' },
      },
    });
  });

  it('reads every variable, splitting and trimming lists', () => {
    const result = parseConfig({
      ...required,
      NODE_ENV: 'production',
      HOST: '0.0.0.0',
      PORT: '8080',
      LOG_LEVEL: 'debug',
      READINESS_TIMEOUT_MS: '1500',
      SHUTDOWN_DRAIN_MS: '5000',
      SHUTDOWN_TIMEOUT_MS: '20000',
      KAFKA_BROKERS: ' kafka-0.kafka:9092 , kafka-1.kafka:9092 ,',
      ZOOKEEPER_CONNECT: 'zk-0:2181,zk-1:2181/dubbo-prod',
      EUREKA_URLS: 'http://eureka-a:8761/eureka,https://eureka-b/eureka',
      ZOOKEEPER_DUBBO_ROOTS: 'dubbo, dubbo-gray',
      EUREKA_FETCH_INTERVAL_MS: '5000',
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.http).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(result.config.kafka.brokers).toEqual(['kafka-0.kafka:9092', 'kafka-1.kafka:9092']);
    expect(result.config.zookeeper).toEqual({
      connect: 'zk-0:2181,zk-1:2181/dubbo-prod',
      dubboRoots: ['dubbo', 'dubbo-gray'],
      sessionTimeoutMs: 30000,
    });
    expect(result.config.eureka).toEqual({
      urls: ['http://eureka-a:8761/eureka', 'https://eureka-b/eureka'],
      fetchIntervalMs: 5000,
    });
    expect(result.config.shutdown).toEqual({ drainMs: 5000, timeoutMs: 20000 });
  });

  it('scopes the bridge election and catalog topic to what the registries are read from, unless named', () => {
    const bridge = (env: Record<string, string>) => {
      const result = parseConfig({ ...required, ...env });
      if (!result.ok) throw new Error(result.errors.join('; '));
      return result.config.registry.bridge;
    };
    const zk = { ZOOKEEPER_CONNECT: 'zk-0:2181', EUREKA_URLS: 'http://a:8761/eureka,http://b:8761/eureka' };
    const base = bridge(zk);
    expect(base.group).toMatch(/^steward-bridge\.[0-9a-f]{8}$/);
    expect(base.catalogTopic).toBe(`steward.catalog.v1.${base.group.slice('steward-bridge.'.length)}`);
    // Eureka peers in another order are the same registry; other ZooKeeper roots are not.
    expect(bridge({ ...zk, EUREKA_URLS: 'http://b:8761/eureka,http://a:8761/eureka' }).group).toBe(base.group);
    expect(bridge({ ...zk, ZOOKEEPER_DUBBO_ROOTS: 'dubbo-gray' }).group).not.toBe(base.group);
    expect(
      bridge({
        ...zk,
        REGISTRY_BRIDGE_MODE: 'always',
        REGISTRY_BRIDGE_GROUP: 'bridge-prod',
        REGISTRY_BRIDGE_LEASE_TOPIC: 'lease',
        REGISTRY_CATALOG_TOPIC: 'catalog',
        REGISTRY_BRIDGE_SESSION_TIMEOUT_MS: '6000',
        REGISTRY_BRIDGE_FALLBACK_MS: '5000',
      }),
    ).toEqual({
      mode: 'always',
      group: 'bridge-prod',
      leaseTopic: 'lease',
      catalogTopic: 'catalog',
      sessionTimeoutMs: 6000,
      fallbackMs: 5000,
    });
  });

  it('lists every missing variable at once', () => {
    expect(errorsOf({})).toEqual(['KAFKA_BROKERS: is required', 'MONGODB_URI: is required']);
  });

  it('treats empty and blank variables as unset', () => {
    expect(errorsOf({ MONGODB_URI: '', KAFKA_BROKERS: '   ' })).toEqual([
      'KAFKA_BROKERS: is required',
      'MONGODB_URI: is required',
    ]);
    const result = parseConfig({ ...required, PORT: '', ZOOKEEPER_CONNECT: '' });
    expect(result.ok && result.config.http.port).toBe(3000);
    expect(result.ok && result.config.zookeeper).toBeNull();
  });

  it('names each bad variable with what is wrong with it', () => {
    const errors = errorsOf({
      MONGODB_URI: 'postgres://db/steward',
      KAFKA_BROKERS: 'localhost',
      PORT: '70000',
      LOG_LEVEL: 'loud',
      READINESS_TIMEOUT_MS: 'soon',
      ZOOKEEPER_CONNECT: 'zk-0',
      EUREKA_URLS: 'ftp://eureka/eureka',
    });
    const names = errors.map((e) => e.split(':')[0]);
    expect(names).toEqual([
      'EUREKA_URLS',
      'KAFKA_BROKERS',
      'LOG_LEVEL',
      'MONGODB_URI',
      'PORT',
      'READINESS_TIMEOUT_MS',
      'ZOOKEEPER_CONNECT',
    ]);
    expect(errors.find((e) => e.startsWith('MONGODB_URI'))).toContain('mongodb://');
    expect(errors.find((e) => e.startsWith('KAFKA_BROKERS'))).toContain('host:port');
    expect(errors.find((e) => e.startsWith('ZOOKEEPER_CONNECT'))).toContain('chroot');
  });

  it.each([
    ['KAFKA_BROKERS', '127.0.0.1:0'],
    ['KAFKA_BROKERS', '127.0.0.1:65536'],
    ['KAFKA_BROKERS', 'a:1,b'],
    ['ZOOKEEPER_CONNECT', '/chroot-only'],
    ['ZOOKEEPER_CONNECT', 'zk:99999'],
    ['EUREKA_URLS', 'not a url'],
    ['PORT', '3000.5'],
    ['SHUTDOWN_TIMEOUT_MS', '10'],
    ['NODE_ENV', 'staging'],
    ['ZOOKEEPER_DUBBO_ROOTS', 'dubbo/providers'],
    ['EUREKA_FETCH_INTERVAL_MS', '10'],
    ['REGISTRY_BRIDGE_MODE', 'sometimes'],
    ['REGISTRY_CATALOG_TOPIC', 'no spaces'],
    ['REGISTRY_BRIDGE_SESSION_TIMEOUT_MS', '500'],
  ])('rejects %s=%s', (name, value) => {
    expect(errorsOf({ ...required, [name]: value }).map((e) => e.split(':')[0])).toEqual([name]);
  });
});
