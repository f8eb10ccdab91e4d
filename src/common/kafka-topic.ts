import type { Kafka } from 'kafkajs';

/**
 * Creates the topic when missing (brokers may not auto-create); true when it was created. `configs`
 * (e.g. `cleanup.policy`) apply only to a topic created here: an existing one is left as it is.
 */
export async function ensureTopic(
  kafka: Kafka,
  topic: string,
  partitions: number,
  configs: Record<string, string> = {},
): Promise<boolean> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = await admin.listTopics();
    if (existing.includes(topic)) return false;
    const configEntries = Object.entries(configs).map(([name, value]) => ({ name, value }));
    try {
      return await admin.createTopics({ topics: [{ topic, numPartitions: partitions, configEntries }], waitForLeaders: true });
    } catch (error) {
      // Another process created it between the list and the create.
      if ((error as { type?: string }).type === 'TOPIC_ALREADY_EXISTS') return false;
      throw error;
    }
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * Brokers refuse a record batch over `message.max.bytes` (1 MiB by default) with MESSAGE_TOO_LARGE,
 * and a producer that sends it again is refused again for ever: sends are cut below it, counted
 * before compression (which only makes them smaller).
 */
export const MAX_SEND_BYTES = 900_000;

/** How many of `values` (from the first) go in one send: at most `maxCount`, at most MAX_SEND_BYTES, at least one. */
export function sendSize(values: readonly { value: string }[], maxCount: number): number {
  let bytes = 0;
  let count = 0;
  while (count < values.length && count < maxCount) {
    bytes += values[count]!.value.length;
    if (count > 0 && bytes > MAX_SEND_BYTES) break;
    count += 1;
  }
  return count;
}
