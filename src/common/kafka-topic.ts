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
