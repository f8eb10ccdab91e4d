import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, type Socket } from 'node:net';
import { Kafka, logLevel } from 'kafkajs';
import { MongoClient } from 'mongodb';
import zookeeper from 'node-zookeeper-client';
import { deadline } from '../common/deadline.js';

/**
 * One real protocol request per dependency. A dependency counts as up only when it answers one:
 * an open port proves nothing. The readiness endpoint and the local stack script share these, so
 * "the stack is up" and "the server is ready" mean the same thing.
 *
 * Each probe is bounded by `timeoutMs` (and by `signal`, when the caller has one), releases every
 * connection it opened even when the peer hangs, and resolves with a few facts for an operator.
 */
export type ProbeDetails = Record<string, string | number | boolean>;

export interface ProbeOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error('probe aborted');
}

/**
 * Runs `work` until it settles or the signal fires, then always runs `cleanup`, told whether the
 * work failed: a failed probe drops its sockets at once instead of waiting for a peer that does
 * not answer.
 */
async function bounded<T>(
  options: ProbeOptions,
  work: (signal: AbortSignal) => Promise<T>,
  cleanup: (failed: boolean) => Promise<unknown> | void,
): Promise<T> {
  const bound = deadline(options.timeoutMs, options.signal);
  const { signal } = bound;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortError(signal));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  let failed = true;
  try {
    const result = await Promise.race([work(signal), aborted]);
    failed = false;
    return result;
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
    bound.clear();
    await Promise.resolve(cleanup(failed)).catch(() => undefined);
  }
}

/** Opens a ZooKeeper session and reads a znode's stat. */
export function probeZookeeper(connectString: string, options: ProbeOptions): Promise<ProbeDetails> {
  const client = zookeeper.createClient(connectString, { sessionTimeout: 10_000, spinDelay: 200, retries: 0 });
  return bounded(
    options,
    () =>
      new Promise<ProbeDetails>((resolve, reject) => {
        client.once('connected', () => {
          client.exists('/zookeeper', (error, stat) => {
            if (error) reject(error instanceof Error ? error : new Error(String(error)));
            else resolve({ session: client.getSessionId().toString('hex'), quotaNode: Boolean(stat) });
          });
        });
        client.connect();
      }),
    (failed) => {
      client.close();
      // close() only queues a closeSession packet; against a server that never finished the
      // handshake it would wait forever, so the socket is dropped by hand.
      if (failed) (client as unknown as { connectionManager?: { socket?: Socket } }).connectionManager?.socket?.destroy();
    },
  );
}

/** Asks the Kafka cluster for its metadata (cluster id, brokers, controller). */
export function probeKafka(brokers: string[], options: ProbeOptions, clientId = 'steward-probe'): Promise<ProbeDetails> {
  // kafkajs cannot be aborted: the probe keeps its sockets so that a failed probe can drop them.
  const sockets = new Set<Socket>();
  const admin = new Kafka({
    clientId,
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: options.timeoutMs,
    requestTimeout: options.timeoutMs,
    retry: { retries: 0 },
    socketFactory: ({ host, port, onConnect }) => {
      const socket = connect({ host, port }, onConnect);
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      return socket;
    },
  }).admin();
  return bounded(
    options,
    async () => {
      await admin.connect();
      const cluster = await admin.describeCluster();
      return { clusterId: cluster.clusterId, brokers: cluster.brokers.length, controller: cluster.controller ?? -1 };
    },
    async (failed) => {
      if (!failed) return admin.disconnect();
      // A request in flight holds disconnect() until its own timeout: drop the sockets, don't wait.
      for (const socket of sockets) socket.destroy();
      void admin.disconnect().catch(() => undefined);
    },
  );
}

/** GET with a fresh connection that an abort really closes (fetch's pool keeps it open). */
function getJson(url: string, signal: AbortSignal): Promise<unknown> {
  const send = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { headers: { Accept: 'application/json' }, agent: false, signal }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch {
          reject(new Error('answer is not JSON'));
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Reads the full registry from the first Eureka server that answers (JSON, as the bridge will). */
export function probeEureka(urls: string[], options: ProbeOptions): Promise<ProbeDetails> {
  return bounded(
    options,
    async (signal) => {
      const failures: string[] = [];
      for (const base of urls) {
        const url = `${base.replace(/\/+$/, '')}/apps`;
        try {
          const body = (await getJson(url, signal)) as { applications?: { application?: unknown } } | null;
          if (!body?.applications) throw new Error('answer has no "applications" object');
          const apps = body.applications.application;
          return { url: base, applications: Array.isArray(apps) ? apps.length : apps ? 1 : 0 };
        } catch (error) {
          if (signal.aborted) throw abortError(signal);
          failures.push(`${url}: ${(error as Error).message}`);
        }
      }
      throw new Error(failures.join('; '));
    },
    () => undefined,
  );
}

/** Sends `ping` and `buildInfo` to the MongoDB-wire server. */
export function probeMongo(uri: string, options: ProbeOptions): Promise<ProbeDetails> {
  // The driver's close() leaves a connection in its handshake open until connectTimeoutMS, so
  // the driver's own timeouts are the probe's.
  const client = new MongoClient(uri, {
    serverSelectionTimeoutMS: options.timeoutMs,
    connectTimeoutMS: options.timeoutMs,
    socketTimeoutMS: options.timeoutMs,
    maxPoolSize: 1,
  });
  return bounded(
    options,
    async () => {
      await client.connect();
      const admin = client.db('admin');
      await admin.command({ ping: 1 });
      const info = await admin.command({ buildInfo: 1 });
      return { version: String(info['version']) };
    },
    () => client.close(true),
  );
}
