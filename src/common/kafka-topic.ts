import type { Kafka } from 'kafkajs';

/** Creates the topic when missing (brokers may not auto-create); true when it was created. */
export async function ensureTopic(kafka: Kafka, topic: string, partitions: number): Promise<boolean> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = await admin.listTopics();
    if (existing.includes(topic)) return false;
    try {
      return await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true });
    } catch (error) {
      // Another process created it between the list and the create.
      if ((error as { type?: string }).type === 'TOPIC_ALREADY_EXISTS') return false;
      throw error;
    }
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
