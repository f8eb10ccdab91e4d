import pino from 'pino';
import { MongoClient } from 'mongodb';
import { Registry } from 'prom-client';
import { parseConfig } from '../config/app-config.js';
import { LiveRelay } from './live-relay.js';
import { LiveSeconds } from './live-seconds.js';
import { StatsAggregator } from './stats-aggregator.js';
import { StatsStore } from './stats-store.js';

/**
 * The stats aggregator as its own process (`npm run stats:aggregator`, i.e.
 * `node dist/stats/aggregator-main.js`): the same consumer group member the server runs when
 * `STATS_AGGREGATOR=on`, reading the same environment (MONGODB_URI, KAFKA_BROKERS,
 * KAFKA_CLIENT_ID, STATS_TOPIC, LIVE_TOPIC). Run as many as the topic has partitions; servers then run with
 * `STATS_AGGREGATOR=off`.
 */
function main(): void {
  const log = pino({ base: { service: 'steward-stats-aggregator' }, level: process.env['LOG_LEVEL'] ?? 'info' });
  const parsed = parseConfig(process.env);
  if (!parsed.ok) {
    log.fatal({ errors: parsed.errors }, `invalid configuration:\n  ${parsed.errors.join('\n  ')}`);
    process.exit(1);
  }
  const { config } = parsed;
  const client = new MongoClient(config.mongodb.uri, { serverSelectionTimeoutMS: 5_000 });
  // Its live seconds reach every server's dashboards through the live topic.
  const live = new LiveSeconds();
  const relay = new LiveRelay({
    brokers: config.kafka.brokers,
    clientId: config.kafka.clientId,
    topic: config.stats.liveTopic,
    warn: (details, message) => log.warn(details, message),
  });
  live.start();
  relay.publish(live);
  const aggregator = new StatsAggregator({
    brokers: config.kafka.brokers,
    clientId: config.kafka.clientId,
    topic: config.stats.topic,
    store: new StatsStore(client.db()),
    live,
    registry: new Registry(),
    logger: log,
  });
  aggregator.start();
  log.info({ topic: config.stats.topic, groupId: aggregator.groupId }, 'stats aggregator started');
  const report = setInterval(() => log.info({ messages: { ...aggregator.totals } }, 'stats aggregator totals'), 60_000);
  report.unref();

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stats aggregator stopping');
    setTimeout(() => {
      log.error('stats aggregator did not stop in 15 s: exiting');
      process.exit(1);
    }, 15_000).unref();
    await aggregator.stop();
    live.stop();
    await relay.stop();
    await client.close();
    log.info({ messages: { ...aggregator.totals } }, 'stats aggregator stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

try {
  main();
} catch (error: unknown) {
  console.error('stats aggregator failed to start:', error);
  process.exit(1);
}
