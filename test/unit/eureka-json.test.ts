import { describe, expect, it } from 'vitest';
import type { Registration } from '../../src/registry-bridge/registration.js';
import {
  EurekaFormatError,
  parseApplicationsBody,
  readDelta,
  readFullRegistry,
  reconcileHashCode,
  toEurekaStatus,
} from '../../src/registry-bridge/eureka/eureka-json.js';

const SOURCE = 'eureka';

/**
 * An instance as Spring Cloud Netflix's Eureka server (Jackson codec) writes it for a Spring Boot
 * client: `@enabled`, booleans and timestamps as strings, `leaseInfo` timestamps as numbers.
 */
function springInstance(app: string, ip: string, port: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const name = app.toLowerCase();
  return {
    instanceId: `${ip}:${name}:${port}`,
    hostName: ip,
    app,
    ipAddr: ip,
    status: 'UP',
    overriddenStatus: 'UNKNOWN',
    port: { $: port, '@enabled': 'true' },
    securePort: { $: 443, '@enabled': 'false' },
    countryId: 1,
    dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
    leaseInfo: {
      renewalIntervalInSecs: 30,
      durationInSecs: 90,
      registrationTimestamp: 1764097200000,
      lastRenewalTimestamp: 1764097230000,
      evictionTimestamp: 0,
      serviceUpTimestamp: 1764097200500,
    },
    metadata: { 'management.port': String(port) },
    homePageUrl: `http://${ip}:${port}/`,
    statusPageUrl: `http://${ip}:${port}/actuator/info`,
    healthCheckUrl: `http://${ip}:${port}/actuator/health`,
    vipAddress: name,
    secureVipAddress: name,
    isCoordinatingDiscoveryServer: 'false',
    lastUpdatedTimestamp: '1764097200500',
    lastDirtyTimestamp: '1764097200412',
    actionType: 'ADDED',
    ...overrides,
  };
}

function body(applications: unknown[] | Record<string, unknown>, hashCode = 'UP_1_'): string {
  return JSON.stringify({ applications: { versions__delta: '1', apps__hashcode: hashCode, application: applications } });
}

function full(text: string) {
  return readFullRegistry(parseApplicationsBody(text), SOURCE);
}

function only(text: string): Registration {
  const { registrations, problems } = full(text);
  expect(problems).toEqual([]);
  expect(registrations).toHaveLength(1);
  return registrations[0] as Registration;
}

describe('parseApplicationsBody', () => {
  it.each([
    ['an HTML error page', '<!doctype html><html><body><h1>502 Bad Gateway</h1></body></html>', /HTML/],
    [
      'an XML registry (no Accept: application/json)',
      '<applications><versions__delta>1</versions__delta></applications>',
      /HTML or XML/,
    ],
    [
      'a truncated body',
      body([{ name: 'ORDER-SERVICE', instance: [springInstance('ORDER-SERVICE', '10.0.0.1', 9002)] }]).slice(0, 180),
      /not JSON/,
    ],
    ['an empty body', '', /not JSON/],
    [
      'JSON that is not a registry',
      '{"timestamp":"2026-11-25T19:28:42.679Z","status":404,"error":"Not Found"}',
      /no "applications"/,
    ],
    ['a JSON array', '[]', /no "applications"/],
    ['applications as a string', '{"applications":"none"}', /no "applications"/],
  ])('rejects %s as a whole', (_case, text, message) => {
    expect(() => parseApplicationsBody(text)).toThrow(EurekaFormatError);
    expect(() => parseApplicationsBody(text)).toThrow(message);
  });

  it('accepts the empty registry', () => {
    const empty = '{"applications":{"versions__delta":"1","apps__hashcode":"","application":[]}}';
    expect(full(empty)).toEqual({ registrations: [], problems: [], hashCode: '' });
  });
});

describe('readFullRegistry', () => {
  it('reads a Spring Cloud instance into a registration', () => {
    const registration = only(body([{ name: 'ORDER-SERVICE', instance: [springInstance('ORDER-SERVICE', '10.0.0.1', 9002)] }]));
    expect(registration).toEqual({
      key: 'ORDER-SERVICE/10.0.0.1:order-service:9002',
      source: SOURCE,
      sourceKind: 'eureka',
      application: 'order-service',
      kind: 'http',
      host: '10.0.0.1',
      port: 9002,
      status: 'UP',
      weight: 100,
      services: [],
      metadata: {
        'management.port': '9002',
        instanceId: '10.0.0.1:order-service:9002',
        hostName: '10.0.0.1',
        vipAddress: 'order-service',
        homePageUrl: 'http://10.0.0.1:9002/',
        healthCheckUrl: 'http://10.0.0.1:9002/actuator/health',
        overriddenStatus: 'UNKNOWN',
        dataCenter: 'MyOwn',
        secure: 'false',
      },
      timestamp: 1764097200500,
    } satisfies Registration);
  });

  it('reads several applications with several instances each', () => {
    const { registrations, problems, hashCode } = full(
      body(
        [
          {
            name: 'ORDER-SERVICE',
            instance: [
              springInstance('ORDER-SERVICE', '10.0.0.1', 9002),
              springInstance('ORDER-SERVICE', '10.0.0.2', 9002, { status: 'DOWN' }),
            ],
          },
          { name: 'USER-SERVICE', instance: [springInstance('USER-SERVICE', '10.0.0.3', 8080)] },
        ],
        'DOWN_1_UP_2_',
      ),
    );
    expect(problems).toEqual([]);
    expect(registrations.map((r) => [r.key, r.application, r.status])).toEqual([
      ['ORDER-SERVICE/10.0.0.1:order-service:9002', 'order-service', 'UP'],
      ['ORDER-SERVICE/10.0.0.2:order-service:9002', 'order-service', 'DOWN'],
      ['USER-SERVICE/10.0.0.3:user-service:8080', 'user-service', 'UP'],
    ]);
    expect(reconcileHashCode(registrations)).toBe(hashCode);
  });

  it.each<[string, string, Partial<Registration>, Record<string, string>?]>([
    [
      'a single application and instance as objects, the port as a string (XStream codec)',
      JSON.stringify({
        applications: {
          versions__delta: 1,
          apps__hashcode: 'UP_1_',
          application: {
            name: 'BILLING',
            instance: springInstance('BILLING', '10.0.0.4', 0, { port: { '@enabled': 'true', $: '8081' } }),
          },
        },
      }),
      { key: 'BILLING/10.0.0.4:billing:0', port: 8081 },
    ],
    [
      'EmptyMap metadata',
      body([
        {
          name: 'BILLING',
          instance: [springInstance('BILLING', '10.0.0.4', 8081, { metadata: { '@class': 'java.util.Collections$EmptyMap' } })],
        },
      ]),
      { weight: 100 },
      { instanceId: '10.0.0.4:billing:8081' },
    ],
    [
      'a secure-only instance (plain port disabled as a string)',
      body([
        {
          name: 'PAYMENT',
          instance: [
            springInstance('PAYMENT', '10.0.0.5', 8080, {
              port: { $: 8080, '@enabled': 'false' },
              securePort: { $: 8443, '@enabled': 'true' },
              healthCheckUrl: undefined,
              secureHealthCheckUrl: 'https://10.0.0.5:8443/actuator/health',
            }),
          ],
        },
      ]),
      { port: 8443 },
      { secure: 'true', healthCheckUrl: 'https://10.0.0.5:8443/actuator/health' },
    ],
    [
      '`@enabled` as real booleans',
      body([
        {
          name: 'PAYMENT',
          instance: [
            springInstance('PAYMENT', '10.0.0.5', 8080, {
              port: { $: 8080, '@enabled': false },
              securePort: { $: 8443, '@enabled': true },
            }),
          ],
        },
      ]),
      { port: 8443 },
      { secure: 'true' },
    ],
    [
      'a port without `@enabled` (enabled, as InstanceInfo defaults)',
      body([{ name: 'PAYMENT', instance: [springInstance('PAYMENT', '10.0.0.5', 8080, { port: { $: 8080 } })] }]),
      { port: 8080 },
      { secure: 'false' },
    ],
    [
      'an unknown status',
      body([{ name: 'BILLING', instance: [springInstance('BILLING', '10.0.0.4', 8081, { status: 'SLEEPING' })] }]),
      { status: 'UNKNOWN' },
    ],
    [
      'no status at all',
      body([{ name: 'BILLING', instance: [springInstance('BILLING', '10.0.0.4', 8081, { status: undefined })] }]),
      { status: 'UNKNOWN' },
    ],
    [
      'OUT_OF_SERVICE with the lower-case `overriddenstatus` spelling',
      body([
        {
          name: 'BILLING',
          instance: [
            springInstance('BILLING', '10.0.0.4', 8081, {
              status: 'OUT_OF_SERVICE',
              overriddenStatus: undefined,
              overriddenstatus: 'OUT_OF_SERVICE',
            }),
          ],
        },
      ]),
      { status: 'OUT_OF_SERVICE' },
      { overriddenStatus: 'OUT_OF_SERVICE' },
    ],
    [
      'a weight in metadata, and numbers as metadata values',
      body([
        {
          name: 'BILLING',
          instance: [
            springInstance('BILLING', '10.0.0.4', 8081, { metadata: { weight: '50', 'dubbo.protocols.dubbo.port': 20880 } }),
          ],
        },
      ]),
      { weight: 50 },
      { weight: '50', 'dubbo.protocols.dubbo.port': '20880' },
    ],
    [
      'a weight that is not a number',
      body([{ name: 'BILLING', instance: [springInstance('BILLING', '10.0.0.4', 8081, { metadata: { weight: 'heavy' } })] }]),
      { weight: 100 },
      { weight: 'heavy' },
    ],
    [
      'the timestamp as a number',
      body([
        { name: 'BILLING', instance: [springInstance('BILLING', '10.0.0.4', 8081, { lastUpdatedTimestamp: 1764097299999 })] },
      ]),
      { timestamp: 1764097299999 },
    ],
    [
      'no instanceId (the id is the host name, as InstanceInfo.getId) and no app (the application name)',
      body([
        {
          name: 'billing',
          instance: [springInstance('BILLING', '10.0.0.4', 8081, { instanceId: '', app: undefined, hostName: 'billing-7f9c' })],
        },
      ]),
      { key: 'BILLING/billing-7f9c', application: 'billing' },
      { instanceId: 'billing-7f9c', hostName: 'billing-7f9c' },
    ],
  ])('reads %s', (_case, text, expected, metadata) => {
    const registration = only(text);
    expect(registration).toMatchObject(expected);
    if (metadata) expect(registration.metadata).toMatchObject(metadata);
    expect(Object.keys(registration.metadata).some((name) => name.startsWith('@'))).toBe(false);
  });

  it('leaves out facts the instance does not have, and the timestamp when it is not one', () => {
    const minimal = {
      instanceId: 'i-1',
      app: 'BARE',
      ipAddr: '10.0.0.9',
      status: 'UP',
      port: { $: 80, '@enabled': 'true' },
      lastUpdatedTimestamp: 'soon',
    };
    const registration = only(body([{ name: 'BARE', instance: minimal }]));
    expect(registration.metadata).toEqual({ instanceId: 'i-1', secure: 'false' });
    expect(registration).not.toHaveProperty('timestamp');
  });

  it('skips bad instances and applications, keeps their good neighbours, and says which', () => {
    const good = springInstance('ORDER-SERVICE', '10.0.0.1', 9002);
    const { registrations, problems } = full(
      body(
        [
          {
            name: 'ORDER-SERVICE',
            instance: [
              null,
              'garbage',
              springInstance('ORDER-SERVICE', '10.0.0.2', 9002, { ipAddr: undefined, status: 'DOWN' }),
              good,
              springInstance('ORDER-SERVICE', '10.0.0.3', 9002, { port: { $: 'abc', '@enabled': 'true' } }),
              springInstance('ORDER-SERVICE', '10.0.0.4', 9002, {
                port: { $: 8080, '@enabled': 'false' },
                securePort: undefined,
              }),
              springInstance('ORDER-SERVICE', '10.0.0.5', 9002, { metadata: 'zone=a' }),
              { hostName: '', app: 'ORDER-SERVICE', ipAddr: '10.0.0.6' },
            ],
          },
          42,
          { name: 'USER-SERVICE', instance: springInstance('USER-SERVICE', '10.0.0.7', 8080) },
        ],
        'DOWN_1_UP_4_',
      ),
    );
    expect(registrations.map((r) => r.key)).toEqual([
      'ORDER-SERVICE/10.0.0.1:order-service:9002',
      'USER-SERVICE/10.0.0.7:user-service:8080',
    ]);
    expect(problems.map((p) => [p.kind, p.detail, p.key, p.status])).toEqual([
      ['eureka-instance', 'ORDER-SERVICE/? (null): instance is not an object', undefined, undefined],
      ['eureka-instance', 'ORDER-SERVICE/? ("garbage"): instance is not an object', undefined, undefined],
      [
        'eureka-instance',
        'ORDER-SERVICE/10.0.0.2:order-service:9002: no ipAddr',
        'ORDER-SERVICE/10.0.0.2:order-service:9002',
        'DOWN',
      ],
      [
        'eureka-instance',
        'ORDER-SERVICE/10.0.0.3:order-service:9002: no valid port',
        'ORDER-SERVICE/10.0.0.3:order-service:9002',
        'UP',
      ],
      [
        'eureka-instance',
        'ORDER-SERVICE/10.0.0.4:order-service:9002: plain port disabled and no valid securePort',
        'ORDER-SERVICE/10.0.0.4:order-service:9002',
        'UP',
      ],
      [
        'eureka-instance',
        'ORDER-SERVICE/10.0.0.5:order-service:9002: metadata is not an object',
        'ORDER-SERVICE/10.0.0.5:order-service:9002',
        'UP',
      ],
      ['eureka-instance', 'ORDER-SERVICE/?: no instanceId or hostName', undefined, undefined],
      ['eureka-application', 'application is 42', undefined, undefined],
    ]);
    // Identifiable bad instances still count in the hash code: the server counts them too.
    const counted = [...registrations, ...problems.filter((p) => p.status).map((p) => ({ status: p.status as string }))];
    expect(reconcileHashCode(counted)).toBe('DOWN_1_UP_5_');
  });

  it('keeps one registration per key (the last) when an answer repeats an instance', () => {
    const { registrations } = full(
      body([
        {
          name: 'ORDER-SERVICE',
          instance: [
            springInstance('ORDER-SERVICE', '10.0.0.1', 9002, { status: 'STARTING' }),
            springInstance('ORDER-SERVICE', '10.0.0.1', 9002, { status: 'UP' }),
          ],
        },
      ]),
    );
    expect(registrations.map((r) => r.status)).toEqual(['UP']);
  });
});

describe('readDelta', () => {
  it('reads ADDED, MODIFIED and DELETED instances, the last by key alone', () => {
    const delta = readDelta(
      parseApplicationsBody(
        body(
          [
            {
              name: 'ORDER-SERVICE',
              instance: [
                springInstance('ORDER-SERVICE', '10.0.0.2', 9002, { actionType: 'ADDED' }),
                springInstance('ORDER-SERVICE', '10.0.0.1', 9002, {
                  actionType: 'MODIFIED',
                  status: 'OUT_OF_SERVICE',
                  overriddenStatus: 'OUT_OF_SERVICE',
                }),
              ],
            },
            { name: 'USER-SERVICE', instance: { instanceId: 'u-1', app: 'USER-SERVICE', actionType: 'DELETED' } },
          ],
          'OUT_OF_SERVICE_1_UP_1_',
        ),
      ),
      SOURCE,
    );
    expect(delta.problems).toEqual([]);
    expect(delta.hashCode).toBe('OUT_OF_SERVICE_1_UP_1_');
    expect(
      delta.changes.map((c) =>
        c.action === 'DELETED' ? [c.action, c.key] : [c.action, c.registration.key, c.registration.status],
      ),
    ).toEqual([
      ['ADDED', 'ORDER-SERVICE/10.0.0.2:order-service:9002', 'UP'],
      ['MODIFIED', 'ORDER-SERVICE/10.0.0.1:order-service:9002', 'OUT_OF_SERVICE'],
      ['DELETED', 'USER-SERVICE/u-1'],
    ]);
  });

  it('reports unreadable changes and keeps the rest', () => {
    const delta = readDelta(
      parseApplicationsBody(
        body([
          {
            name: 'ORDER-SERVICE',
            instance: [
              springInstance('ORDER-SERVICE', '10.0.0.2', 9002, { actionType: 'RENAMED' }),
              springInstance('ORDER-SERVICE', '10.0.0.3', 9002, { actionType: 'MODIFIED', ipAddr: '', status: 'DOWN' }),
              { actionType: 'DELETED', app: 'ORDER-SERVICE' },
              springInstance('ORDER-SERVICE', '10.0.0.4', 9002, { actionType: 'DELETED' }),
            ],
          },
        ]),
      ),
      SOURCE,
    );
    expect(delta.changes).toEqual([{ action: 'DELETED', key: 'ORDER-SERVICE/10.0.0.4:order-service:9002' }]);
    expect(delta.problems).toEqual([
      { kind: 'eureka-instance', detail: 'ORDER-SERVICE/10.0.0.2:order-service:9002: unknown actionType "RENAMED"' },
      {
        kind: 'eureka-instance',
        detail: 'ORDER-SERVICE/10.0.0.3:order-service:9002: no ipAddr',
        key: 'ORDER-SERVICE/10.0.0.3:order-service:9002',
        status: 'DOWN',
      },
      { kind: 'eureka-instance', detail: 'ORDER-SERVICE/?: DELETED without app or id' },
    ]);
  });

  it('has no hash code when the server sent none', () => {
    expect(readDelta({ application: [] }, SOURCE)).toEqual({ changes: [], problems: [] });
  });
});

describe('reconcileHashCode (Eureka Applications.getReconcileHashCode)', () => {
  const of = (...statuses: string[]) => statuses.map((status) => ({ status }));
  it.each([
    ['the empty registry', of(), ''],
    ['one instance', of('UP'), 'UP_1_'],
    ['statuses in ascending order, whatever the input order', of('UP', 'DOWN', 'UP', 'UP'), 'DOWN_1_UP_3_'],
    [
      'every Eureka status',
      of('UP', 'UNKNOWN', 'STARTING', 'OUT_OF_SERVICE', 'DOWN', 'UP', 'OUT_OF_SERVICE'),
      'DOWN_1_OUT_OF_SERVICE_2_STARTING_1_UNKNOWN_1_UP_2_',
    ],
    ['counts above nine', of(...Array<string>(12).fill('UP'), 'STARTING'), 'STARTING_1_UP_12_'],
  ])('%s', (_case, instances, expected) => {
    expect(reconcileHashCode(instances)).toBe(expected);
  });

  it('matches the server on an answer the real server gave', () => {
    const answer =
      '{"applications":{"versions__delta":"1","apps__hashcode":"OUT_OF_SERVICE_1_UP_1_","application":[{"name":"PROBE-APP","instance":[' +
      JSON.stringify(
        springInstance('PROBE-APP', '10.0.0.9', 8080, { status: 'OUT_OF_SERVICE', overriddenStatus: 'OUT_OF_SERVICE' }),
      ) +
      ',' +
      JSON.stringify(springInstance('PROBE-APP', '10.0.0.10', 8080)) +
      ']}]}}';
    const { registrations, hashCode } = full(answer);
    expect(reconcileHashCode(registrations)).toBe(hashCode);
  });
});

describe('toEurekaStatus', () => {
  it.each([
    ['UP', 'UP'],
    ['OUT_OF_SERVICE', 'OUT_OF_SERVICE'],
    ['up', 'UNKNOWN'],
    ['DISABLED', 'UNKNOWN'],
    [undefined, 'UNKNOWN'],
    [3, 'UNKNOWN'],
  ])('%s → %s', (value, expected) => {
    expect(toEurekaStatus(value)).toBe(expected);
  });
});
