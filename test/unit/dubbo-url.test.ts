import { describe, expect, it } from 'vitest';
import { BadDubboUrl, formDecode, parseDubboUrl, registrationFromZnode } from '../../src/registry-bridge/zookeeper/dubbo-url.js';

/** What Java's URLEncoder.encode(url, "UTF-8") writes as the znode name. */
function javaEncode(url: string): string {
  return encodeURIComponent(url)
    .replace(/%20/g, '+')
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

// The real example from registries.md (Dubbo 3.1.4).
const PROVIDER =
  'dubbo://30.221.146.35:20880/org.apache.dubbo.samples.api.GreetingsService?anyhost=true&application=first-dubbo-provider&background=false&deprecated=false&dubbo=2.0.2&dynamic=true&environment=product&generic=false&interface=org.apache.dubbo.samples.api.GreetingsService&methods=sayHi&pid=85639&release=3.1.4&service-name-mapping=true&side=provider&timestamp=1674960780647';
const folder = {
  path: '/dubbo/org.apache.dubbo.samples.api.GreetingsService/providers',
  interface: 'org.apache.dubbo.samples.api.GreetingsService',
  category: 'providers' as const,
};

describe('Dubbo URLs in znode names', () => {
  it('decodes a real provider registration into a registration', () => {
    const name = javaEncode(PROVIDER);
    expect(name).toContain('%3A%2F%2F');
    const r = registrationFromZnode('zookeeper:zk', folder, name);
    expect(r).toMatchObject({
      key: `${folder.path}/${name}`,
      source: 'zookeeper:zk',
      sourceKind: 'zookeeper',
      application: 'first-dubbo-provider',
      kind: 'dubbo',
      host: '30.221.146.35',
      port: 20880,
      status: 'UP',
      weight: 100,
      timestamp: 1674960780647,
      services: [
        {
          key: 'org.apache.dubbo.samples.api.GreetingsService',
          interface: 'org.apache.dubbo.samples.api.GreetingsService',
          group: '',
          version: '',
          protocol: 'dubbo',
          methods: ['sayHi'],
          side: 'provider',
        },
      ],
    });
    expect(r.metadata).toMatchObject({ release: '3.1.4', dubbo: '2.0.2', pid: '85639', 'service-name-mapping': 'true' });
    expect(r.metadata).not.toHaveProperty('application');
  });

  it('reads group, version, weight, several methods, and a disabled override', () => {
    const url =
      'tri://10.0.0.7:50051/com.foo.OrderService?application=Order-Service&group=gold&version=2.0.0&methods=get,list,cancel&weight=250&disabled=true&side=provider&mock=force:return+null';
    const r = registrationFromZnode('zk', { ...folder, interface: 'com.foo.OrderService' }, javaEncode(url));
    expect(r.application).toBe('order-service');
    expect(r.services[0]).toMatchObject({
      key: 'gold/com.foo.OrderService:2.0.0',
      protocol: 'tri',
      methods: ['get', 'list', 'cancel'],
    });
    expect(r.weight).toBe(250);
    expect(r.status).toBe('DISABLED');
    // Values are taken verbatim once the name is decoded: a `+` inside stays a `+`.
    expect(r.metadata['mock']).toBe('force:return+null');
  });

  it('reads a consumer registration (no port) from the consumers folder', () => {
    const url =
      'consumer://10.0.0.9/com.foo.OrderService?application=web&category=consumers&check=false&interface=com.foo.OrderService&methods=get&side=consumer';
    const r = registrationFromZnode(
      'zk',
      { path: '/dubbo/com.foo.OrderService/consumers', interface: 'com.foo.OrderService', category: 'consumers' },
      javaEncode(url),
    );
    expect(r).toMatchObject({ application: 'web', host: '10.0.0.9', port: 0 });
    expect(r.services[0]?.side).toBe('consumer');
  });

  it('reads IPv6 hosts and credentials, and falls back to the path and folder for the interface', () => {
    expect(parseDubboUrl('dubbo://user:pw@[fe80::1]:20880/com.foo.Bar?x=1')).toMatchObject({
      host: 'fe80::1',
      port: 20880,
      path: 'com.foo.Bar',
    });
    const r = registrationFromZnode('zk', folder, javaEncode('dubbo://h:1/?application=a'));
    expect(r.services[0]?.interface).toBe(folder.interface);
  });

  it('decodes form encoding: + is a space', () => {
    expect(formDecode('a+b%2Bc')).toBe('a b+c');
  });

  it.each([
    ['bad percent-encoding', 'dubbo%3A%2F%2F%E0%A4%A'],
    ['no protocol', encodeURIComponent('://h:1/x')],
    ['port out of range', encodeURIComponent('dubbo://h:99999/x')],
    ['non-numeric port', encodeURIComponent('dubbo://h:abc/x')],
    ['no host', encodeURIComponent('dubbo://:20880/x')],
    ['unterminated IPv6', encodeURIComponent('dubbo://[fe80::1:20880/x')],
    ['bad protocol', encodeURIComponent('du bbo://h:1/x')],
  ])('rejects %s', (_what, name) => {
    expect(() => registrationFromZnode('zk', folder, name)).toThrow(BadDubboUrl);
  });
});
