import zookeeper from 'node-zookeeper-client';
import { parse, stringify } from 'yaml';
import { isNoNode, zkCode, zkError } from '../zookeeper/zk-errors.js';

/**
 * Writes Dubbo dynamic configuration (the configurator rules Dubbo 2.7.3+ and 3.x consumers and
 * providers obey without a restart) to `/<root>/config/dubbo/<application>.configurators`, as
 * YAML with application scope.
 *
 * The node may hold other tools' entries (dubbo-admin, operators): Steward edits only its own
 * entries (matched by address, side and parameter name), read-modify-write with the znode version
 * so a concurrent writer is never overwritten.
 */

export interface ConfiguratorEntry {
  /** `ip:port` of the provider instance (`0.0.0.0` would mean all). */
  address: string;
  side: 'provider' | 'consumer';
  /** One parameter, e.g. `disabled: true` or `weight: 200`. */
  parameter: string;
  value: string | number | boolean;
}

interface ConfigItem {
  addresses?: string[];
  side?: string;
  parameters?: Record<string, unknown>;
  [key: string]: unknown;
}

interface ConfiguratorDocument {
  configVersion?: string;
  scope?: string;
  key?: string;
  enabled?: boolean;
  configs?: ConfigItem[];
  [key: string]: unknown;
}

const isOurs = (item: ConfigItem, entry: ConfiguratorEntry) =>
  item.side === entry.side &&
  Array.isArray(item.addresses) &&
  item.addresses.length === 1 &&
  item.addresses[0] === entry.address &&
  item.parameters !== undefined &&
  Object.keys(item.parameters).length === 1 &&
  entry.parameter in item.parameters;

export class DubboConfiguratorWriter {
  private client?: zookeeper.Client;
  private connecting?: Promise<zookeeper.Client>;

  constructor(
    private readonly connect: string,
    private readonly root = 'dubbo',
  ) {}

  pathOf(application: string): string {
    return `/${this.root}/config/dubbo/${application}.configurators`;
  }

  /** Adds (or replaces) Steward's entry for this address, side and parameter. */
  apply(application: string, entry: ConfiguratorEntry): Promise<string> {
    return this.edit(application, (doc) => {
      const configs = (doc.configs ?? []).filter((item) => !isOurs(item, entry));
      configs.push({ addresses: [entry.address], side: entry.side, parameters: { [entry.parameter]: entry.value } });
      return { ...doc, configs };
    });
  }

  /** Removes Steward's entry; deletes the node when nothing else is left in it. */
  retract(application: string, entry: Omit<ConfiguratorEntry, 'value'>): Promise<string> {
    return this.edit(application, (doc) => ({
      ...doc,
      configs: (doc.configs ?? []).filter((item) => !isOurs(item, { ...entry, value: '' })),
    }));
  }

  /** The node's current YAML, or undefined. */
  async read(application: string): Promise<string | undefined> {
    const client = await this.session();
    const result = await new Promise<{ data?: Buffer }>((resolve, reject) =>
      client.getData(this.pathOf(application), (error, data) => {
        if (!error) resolve({ data });
        else if (isNoNode(error)) resolve({});
        else reject(zkError(error));
      }),
    );
    return result.data?.toString('utf8');
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
    this.connecting = undefined;
  }

  private async edit(application: string, change: (doc: ConfiguratorDocument) => ConfiguratorDocument): Promise<string> {
    const client = await this.session();
    const path = this.pathOf(application);
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await new Promise<{ data?: Buffer; version: number }>((resolve, reject) =>
        client.getData(path, (error, data, stat) => {
          if (!error) resolve({ data, version: stat.version });
          else if (isNoNode(error)) resolve({ version: -1 });
          else reject(zkError(error));
        }),
      );
      const existing = current.data && current.data.length > 0 ? (parse(current.data.toString('utf8')) as unknown) : undefined;
      const base: ConfiguratorDocument =
        existing && typeof existing === 'object' && !Array.isArray(existing)
          ? (existing as ConfiguratorDocument)
          : { configVersion: 'v3.0', scope: 'application', key: application, enabled: true };
      const next = change(base);
      const yaml = stringify({
        ...next,
        configVersion: next.configVersion ?? 'v3.0',
        scope: 'application',
        key: application,
        enabled: true,
      });
      const empty = (next.configs ?? []).length === 0;
      const outcome = await new Promise<'done' | 'conflict'>((resolve, reject) => {
        const finish = (error: unknown) => {
          if (!error) resolve('done');
          else if (
            [zookeeper.Exception.BAD_VERSION, zookeeper.Exception.NODE_EXISTS, zookeeper.Exception.NO_NODE].includes(
              zkCode(error),
            )
          )
            resolve('conflict');
          else reject(zkError(error));
        };
        if (current.version === -1) {
          if (empty) return resolve('done');
          client.mkdirp(path.slice(0, path.lastIndexOf('/')), (mkdirError) => {
            if (mkdirError) return reject(zkError(mkdirError));
            client.create(path, Buffer.from(yaml), zookeeper.CreateMode.PERSISTENT, finish);
          });
        } else if (empty) {
          client.remove(path, current.version, finish);
        } else {
          client.setData(path, Buffer.from(yaml), current.version, finish);
        }
      });
      if (outcome === 'done') return empty ? '' : yaml;
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
