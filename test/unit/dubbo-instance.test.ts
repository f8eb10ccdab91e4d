import { describe, expect, it } from 'vitest';
import {
  BadInstanceData,
  serviceFromDefinition,
  parseInstanceData,
  servicesFromMetadataInfo,
} from '../../src/registry-bridge/zookeeper/dubbo-instance.js';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

// Shapes as Dubbo 3's ZookeeperServiceDiscovery (Curator) writes them.
const dubboInstance = {
  name: 'first-dubbo-provider',
  id: '10.0.0.7:20880',
  address: '10.0.0.7',
  port: 20880,
  sslPort: null,
  payload: {
    '@class': 'org.apache.dubbo.registry.zookeeper.ZookeeperInstance',
    id: '10.0.0.7:20880',
    name: 'first-dubbo-provider',
    metadata: {
      'dubbo.endpoints': '[{"port":20880,"protocol":"dubbo"}]',
      'dubbo.metadata-service.url-params':
        '{"connections":"1","version":"1.0.0","dubbo":"2.0.2","side":"provider","port":"20880","protocol":"dubbo"}',
      'dubbo.metadata.revision': 'a1b2c3',
      'dubbo.metadata.storage-type': 'local',
      timestamp: '1674960780647',
    },
  },
  registrationTimeUTC: 1674960781000,
  serviceType: 'DYNAMIC',
  uriSpec: null,
};

describe('Dubbo 3 application-level instances', () => {
  it('reads a Dubbo instance and its metadata revision', () => {
    const { registration, revision } = parseInstanceData(
      'zk',
      '/services/first-dubbo-provider/10.0.0.7:20880',
      'first-dubbo-provider',
      json(dubboInstance),
    );
    expect(revision).toBe('a1b2c3');
    expect(registration).toMatchObject({
      key: '/services/first-dubbo-provider/10.0.0.7:20880',
      application: 'first-dubbo-provider',
      kind: 'dubbo',
      host: '10.0.0.7',
      port: 20880,
      status: 'UP',
      timestamp: 1674960781000,
    });
    expect(registration.metadata['dubbo.endpoints']).toBe('[{"port":20880,"protocol":"dubbo"}]');
  });

  it('treats revision 0 as none, and enabled:false as disabled', () => {
    const data = {
      ...dubboInstance,
      enabled: false,
      payload: { ...dubboInstance.payload, metadata: { 'dubbo.metadata.revision': '0' } },
    };
    const parsed = parseInstanceData('zk', '/services/a/h:1', 'a', json(data));
    expect(parsed.revision).toBeUndefined();
    expect(parsed.registration.status).toBe('DISABLED');
  });

  it('reads a Spring Cloud Zookeeper instance as an HTTP endpoint', () => {
    const data = {
      name: 'Billing',
      id: '9d5c1e2a-…',
      address: '10.0.0.8',
      port: 8080,
      payload: {
        '@class': 'org.springframework.cloud.zookeeper.discovery.ZookeeperInstance',
        id: 'billing-1',
        name: 'billing',
        metadata: { zone: 'a' },
      },
    };
    const { registration } = parseInstanceData('zk', '/services/billing/9d5c', 'billing', json(data));
    expect(registration).toMatchObject({ application: 'billing', kind: 'http', port: 8080, metadata: { zone: 'a' } });
  });

  it.each([
    ['empty data', Buffer.alloc(0)],
    ['not JSON', Buffer.from('<html>')],
    ['an array', json([1])],
    ['no address', json({ ...dubboInstance, address: '' })],
    ['bad port', json({ ...dubboInstance, port: 'x' })],
    ['unknown payload class', json({ ...dubboInstance, payload: { '@class': 'com.evil.Gadget' } })],
  ])('rejects %s', (_what, data) => {
    expect(() => parseInstanceData('zk', '/services/a/b', 'a', data)).toThrow(BadInstanceData);
  });
});

describe('Dubbo 3 metadata', () => {
  it('reads the services of a metadata report', () => {
    const report = {
      app: 'first-dubbo-provider',
      revision: 'a1b2c3',
      services: {
        'org.apache.dubbo.samples.api.GreetingsService:dubbo': {
          name: 'org.apache.dubbo.samples.api.GreetingsService',
          protocol: 'dubbo',
          path: 'org.apache.dubbo.samples.api.GreetingsService',
          params: { methods: 'sayHi,sayBye', side: 'provider' },
        },
        'gold/com.foo.OrderService:2.0.0:tri': {
          name: 'com.foo.OrderService',
          group: 'gold',
          version: '2.0.0',
          protocol: 'tri',
          params: {},
        },
      },
    };
    expect(servicesFromMetadataInfo(json(report))).toEqual([
      {
        key: 'org.apache.dubbo.samples.api.GreetingsService',
        interface: 'org.apache.dubbo.samples.api.GreetingsService',
        group: '',
        version: '',
        protocol: 'dubbo',
        methods: ['sayHi', 'sayBye'],
        side: 'provider',
      },
      {
        key: 'gold/com.foo.OrderService:2.0.0',
        interface: 'com.foo.OrderService',
        group: 'gold',
        version: '2.0.0',
        protocol: 'tri',
        methods: [],
        side: 'provider',
      },
    ]);
    expect(() => servicesFromMetadataInfo(Buffer.from('{"app":"x"}'))).toThrow(BadInstanceData);
  });

  it('reads methods, group and version from a service definition', () => {
    expect(serviceFromDefinition(json({ parameters: { methods: 'get,list', group: 'g', version: '1.0' } }))).toEqual({
      methods: ['get', 'list'],
      group: 'g',
      version: '1.0',
    });
    expect(serviceFromDefinition(json({ canonicalName: 'x', methods: [{ name: 'a' }, { name: 'b' }, { name: 'a' }] }))).toEqual({
      methods: ['a', 'b'],
      group: '',
      version: '',
    });
    expect(() => serviceFromDefinition(Buffer.from('nope'))).toThrow(BadInstanceData);
  });
});
