import type { Producer } from 'kafkajs';
import type { OutgoingRecord, Publisher } from './records';

/** Publisher over a kafkajs producer: acks from all in-sync replicas, one request per call. */
export class KafkaPublisher implements Publisher {
  constructor(private readonly producer: Producer) {}

  async publish(records: OutgoingRecord[]): Promise<void> {
    if (records.length === 0) return;
    const byTopic = new Map<string, OutgoingRecord[]>();
    for (const record of records) {
      const list = byTopic.get(record.topic) ?? [];
      list.push(record);
      byTopic.set(record.topic, list);
    }
    await this.producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, list]) => ({
        topic,
        messages: list.map((r) => ({ key: r.key, value: r.value, headers: r.headers ?? {} })),
      })),
    });
  }
}
