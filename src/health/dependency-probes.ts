import { Kafka, logLevel } from 'kafkajs';
import { MongoClient } from 'mongodb';
import zookeeper from 'node-zookeeper-client';

/**
 * One real protocol request per dependency. A dependency counts as up only when it answers one:
 * an open port proves nothing. The readiness endpoint and the local stack script share these, so
 * "the stack is up" and "the server is ready" mean the same thing.
 *
 * Each probe honours its AbortSignal, releases every connection it opened, and resolves with a
 * few facts worth showing an operator.
 */
export type ProbeDetails = Record<string, string | number | boolean>;

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error('probe aborted');
}

/** Runs `work` until it settles or the signal fires, then always runs `cleanup`. */
async function withCleanup<T>(signal: AbortSignal, work: () => Promise<T>, cleanup: () => Promise<unknown> | void): Promise<T> {
  if (signal.aborted) throw abortError(signal);
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work(), aborted]);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
    await Promise.resolve(cleanup()).catch(() => undefined);
  }
}

/** Opens a ZooKeeper session and reads the root znode's stat. */
export function probeZookeeper(connect: string, signal: AbortSignal): Promise<ProbeDetails> {
  const client = zookeeper.createClient(connect, { sessionTimeout: 10_000, spinDelay: 200, retries: 0 });
  return withCleanup(
    signal,
    () =>
      new Promise<ProbeDetails>((resolve, reject) => {
        client.once('connected', () => {
          client.exists('/zookeeper', (error, stat) => {
            if (error) reject(error);
            else resolve({ session: client.getSessionId().toString('hex'), quotaNode: Boolean(stat) });
          });
        });
        client.connect();
      }),
    () => client.close(),
  );
}

/** Asks the Kafka cluster for its metadata (cluster id, brokers, controller). */
export function probeKafka(brokers: string[], signal: AbortSignal, clientId = 'steward-probe'): Promise<ProbeDetails> {
  const admin = new Kafka({
    clientId,
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3_000,
    requestTimeout: 5_000,
    retry: { retries: 0 },
  }).admin();
  return withCleanup(
    signal,
    async () => {
      await admin.connect();
      const cluster = await admin.describeCluster();
      return { clusterId: cluster.clusterId, brokers: cluster.brokers.length, controller: cluster.controller ?? -1 };
    },
    () => admin.disconnect(),
  );
}

/** Reads the full registry from the first Eureka server that answers (JSON, as the bridge will). */
export async function probeEureka(urls: string[], signal: AbortSignal): Promise<ProbeDetails> {
  const failures: string[] = [];
  for (const base of urls) {
    const url = `${base.replace(/\/+$/, '')}/apps`;
    try {
      const response = await fetch(url, { headers: { Accept: 'application/json' }, signal });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = (await response.json()) as { applications?: { application?: unknown } };
      if (!body.applications) throw new Error('answer has no "applications" object');
      const apps = body.applications.application;
      const count = Array.isArray(apps) ? apps.length : apps ? 1 : 0;
      return { url: base, applications: count };
    } catch (error) {
      if (signal.aborted) throw abortError(signal);
      failures.push(`${url}: ${(error as Error).message}`);
    }
  }
  throw new Error(failures.join('; '));
}

/** Sends `ping` and `buildInfo` to the MongoDB-wire server. */
export function probeMongo(uri: string, signal: AbortSignal): Promise<ProbeDetails> {
  const client = new MongoClient(uri, {
    serverSelectionTimeoutMS: 5_000,
    connectTimeoutMS: 3_000,
    maxPoolSize: 1,
    monitorCommands: false,
  });
  return withCleanup(
    signal,
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
