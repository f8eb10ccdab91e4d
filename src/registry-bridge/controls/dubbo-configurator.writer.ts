import zookeeper from 'node-zookeeper-client';
import { parse, stringify } from 'yaml';
import { isNoNode, zkCode, zkError } from '../zookeeper/zk-errors.js';
import { serviceKey } from '../zookeeper/dubbo-url.js';

/**
 * Writes Dubbo dynamic configuration that real consumers obey without a restart: a service-scope
 * configurator at `/<root>/config/dubbo/<interface>:<version>:<group>.configurators` with a
 * consumer-side item that picks one provider instance:
 *
 *   configVersion: v3.0
 *   scope: service
 *   key: [group/]interface[:version]
 *   enabled: true
 *   configs:
 *     - side: consumer
 *       addresses: ["0.0.0.0"]            # every consumer
 *       providerAddresses: ["ip:port"]    # this provider instance
 *       parameters: { disabled: true }    # or { weight: N }
 *
 * Measured on Dubbo 3.3.6 (test/fixtures/java/NOTES.md): consumers drop the instance within about
 * 0.2 s. An application-scope rule keyed by the provider app with `side: consumer` has no effect;
 * `side: provider` works but rides on the provider re-registering (up to 9 s).
 *
 * The node may hold other tools' items: Steward edits only its own (same side, addresses,
 * provider address and parameter), read-modify-write on the znode version.
 */

export interface DubboServiceName {
  interface: string;
  group: string;
  version: string;
}

export interface ProviderParameter {
  /** `ip:port` of the provider instance. */
  providerAddress: string;
  parameter: 'disabled' | 'weight';
}

interface ConfigItem {
  side?: string;
  addresses?: unknown;
  providerAddresses?: unknown;
  parameters?: Record<string, unknown>;
  [key: string]: unknown;
}

interface ConfiguratorDocument {
  configs?: ConfigItem[];
  [key: string]: unknown;
}

const isOurs = (item: ConfigItem, target: ProviderParameter) =>
  item.side === 'consumer' &&
  JSON.stringify(item.addresses) === '["0.0.0.0"]' &&
  JSON.stringify(item.providerAddresses) === JSON.stringify([target.providerAddress]) &&
  item.parameters !== undefined &&
  Object.keys(item.parameters).length === 1 &&
  target.parameter in item.parameters;

export class DubboConfiguratorWriter {
  private client?: zookeeper.Client;
  private connecting?: Promise<zookeeper.Client>;

  constructor(
    private readonly connect: string,
    private readonly root = 'dubbo',
  ) {}

  /** Dubbo's node name keeps empty parts: `com.foo.Bar::.configurators`. */
  pathOf(service: DubboServiceName): string {
    return `/${this.root}/config/dubbo/${service.interface}:${service.version}:${service.group}.configurators`;
  }

  /** Adds (or replaces) Steward's item for this provider and parameter. */
  apply(service: DubboServiceName, target: ProviderParameter, value: boolean | number): Promise<void> {
    return this.edit(service, (configs) => [
      ...configs.filter((item) => !isOurs(item, target)),
      {
        side: 'consumer',
        addresses: ['0.0.0.0'],
        providerAddresses: [target.providerAddress],
        parameters: { [target.parameter]: value },
      },
    ]);
  }

  /** Removes Steward's item; deletes the node when nothing else is left in it. */
  retract(service: DubboServiceName, target: ProviderParameter): Promise<void> {
    return this.edit(service, (configs) => configs.filter((item) => !isOurs(item, target)));
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
    this.connecting = undefined;
  }

  private async edit(service: DubboServiceName, change: (configs: ConfigItem[]) => ConfigItem[]): Promise<void> {
    const client = await this.session();
    const path = this.pathOf(service);
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await new Promise<{ data?: Buffer; version: number }>((resolve, reject) =>
        client.getData(path, (error, data, stat) => {
          if (!error) resolve({ data, version: stat.version });
          else if (isNoNode(error)) resolve({ version: -1 });
          else reject(zkError(error));
        }),
      );
      const existing: unknown = current.data && current.data.length > 0 ? parse(current.data.toString('utf8')) : undefined;
      const doc: ConfiguratorDocument =
        existing && typeof existing === 'object' && !Array.isArray(existing) ? (existing as ConfiguratorDocument) : {};
      const configs = change(Array.isArray(doc.configs) ? doc.configs : []);
      const yaml = stringify({
        ...doc,
        configVersion: 'v3.0',
        scope: 'service',
        key: serviceKey(service.interface, service.group, service.version),
        enabled: true,
        configs,
      });
      const outcome = await new Promise<'done' | 'conflict'>((resolve, reject) => {
        const finish = (error: unknown) => {
          if (!error) resolve('done');
          else if (
            [zookeeper.Exception.BAD_VERSION, zookeeper.Exception.NODE_EXISTS, zookeeper.Exception.NO_NODE].includes(
              zkCode(error),
            )
          ) {
            resolve('conflict');
          } else reject(zkError(error));
        };
        if (configs.length === 0) {
          if (current.version === -1) resolve('done');
          else client.remove(path, current.version, finish);
        } else if (current.version === -1) {
          client.mkdirp(path.slice(0, path.lastIndexOf('/')), (mkdirError) => {
            if (mkdirError) reject(zkError(mkdirError));
            else client.create(path, Buffer.from(yaml), zookeeper.CreateMode.PERSISTENT, finish);
          });
        } else {
          client.setData(path, Buffer.from(yaml), current.version, finish);
        }
      });
      if (outcome === 'done') return;
    }
    throw new Error(`${path} kept changing under us; try again`);
  }

  private session(): Promise<zookeeper.Client> {
    if (this.client && this.client.getState() === zookeeper.State.SYNC_CONNECTED) return Promise.resolve(this.client);
    this.connecting ??= new Promise<zookeeper.Client>((resolve, reject) => {
      this.client?.close();
      const client = zookeeper.createClient(this.connect, { sessionTimeout: 15_000, spinDelay: 500, retries: 0 });
      const timer = setTimeout(() => {
        client.close();
        this.connecting = undefined;
        reject(new Error(`ZooKeeper at ${this.connect} did not answer`));
      }, 10_000);
      client.once('connected', () => {
        clearTimeout(timer);
        this.client = client;
        this.connecting = undefined;
        resolve(client);
      });
      client.connect();
    });
    return this.connecting;
  }
}
