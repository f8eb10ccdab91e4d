import zookeeper from 'node-zookeeper-client';
import { isNoNode, zkError } from '../../src/registry-bridge/zookeeper/zk-errors.js';

/** A plain ZooKeeper client for tests: writes registry data the way Dubbo would, and reads it back. */
export class ZkClient {
  private constructor(private readonly client: zookeeper.Client) {}

  static async connect(connect: string): Promise<ZkClient> {
    const client = zookeeper.createClient(connect, { sessionTimeout: 10_000, spinDelay: 200, retries: 0 });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ZooKeeper session at ${connect}`)), 10_000);
      client.once('connected', () => {
        clearTimeout(timer);
        resolve();
      });
      client.connect();
    });
    return new ZkClient(client);
  }

  mkdirp(path: string): Promise<void> {
    return new Promise((resolve, reject) => this.client.mkdirp(path, (e) => (e ? reject(zkError(e)) : resolve())));
  }

  /** Creates `path` (parents too) with data; ephemeral nodes vanish with this writer's session. */
  async create(
    path: string,
    data?: string | Buffer,
    mode: 'persistent' | 'ephemeral' = 'persistent',
    parents = true,
  ): Promise<void> {
    if (parents) await this.mkdirp(path.slice(0, path.lastIndexOf('/')) || '/');
    const createMode = mode === 'ephemeral' ? zookeeper.CreateMode.EPHEMERAL : zookeeper.CreateMode.PERSISTENT;
    const buffer = data === undefined ? undefined : Buffer.isBuffer(data) ? data : Buffer.from(data);
    await new Promise<void>((resolve, reject) =>
      this.client.create(path, buffer ?? Buffer.alloc(0), createMode, (e) => (e ? reject(zkError(e)) : resolve())),
    );
  }

  setData(path: string, data: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.client.setData(path, Buffer.from(data), -1, (e) => (e ? reject(zkError(e)) : resolve())),
    );
  }

  getData(path: string): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) =>
      this.client.getData(path, (e, data) => {
        if (!e) return resolve(data);
        if (isNoNode(e)) return resolve(undefined);
        reject(zkError(e));
      }),
    );
  }

  children(path: string): Promise<string[]> {
    return new Promise((resolve, reject) =>
      this.client.getChildren(path, (e, names) => {
        if (!e) return resolve(names);
        if (isNoNode(e)) return resolve([]);
        reject(zkError(e));
      }),
    );
  }

  /** Node data as text; undefined when the node does not exist. */
  async text(path: string): Promise<string | undefined> {
    return (await this.getData(path))?.toString('utf8');
  }

  /** Whether the node exists, and whether it is ephemeral. */
  stat(path: string): Promise<{ ephemeral: boolean } | undefined> {
    return new Promise((resolve, reject) =>
      this.client.exists(path, (e, stat) => {
        if (e) return reject(zkError(e));
        resolve(stat ? { ephemeral: stat.ephemeralOwner.some((byte) => byte !== 0) } : undefined);
      }),
    );
  }

  /** Decoded provider URLs of an interface (interface-level registrations). */
  async providerUrls(iface: string, root = '/dubbo'): Promise<string[]> {
    return (await this.children(`${root}/${iface}/providers`))
      .filter((name) => name.includes('%3A%2F%2F'))
      .map((name) => decodeURIComponent(name.replace(/\+/g, ' ')));
  }

  /** Removes `path` and everything below it; a missing node is fine. */
  async removeTree(path: string): Promise<void> {
    for (const child of await this.children(path)) await this.removeTree(`${path}/${child}`);
    await new Promise<void>((resolve, reject) =>
      this.client.remove(path, -1, (e) => (!e || isNoNode(e) ? resolve() : reject(zkError(e)))),
    );
  }

  close(): void {
    this.client.close();
  }
}

/** What Java's URLEncoder.encode(url, "UTF-8") writes: the znode name of a Dubbo registration. */
export function javaFormEncode(url: string): string {
  return encodeURIComponent(url)
    .replace(/%20/g, '+')
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
