import { Kafka, logLevel, Partitioners, type Consumer, type IHeaders } from 'kafkajs';

/**
 * Brokers for integration and end-to-end tests: KAFKA_BROKERS (npm test starts a throwaway
 * broker from jars and sets it). Tests fail loudly rather than fake a broker.
 */
export function testBrokers(): string[] {
  const brokers = process.env['KAFKA_BROKERS'];
  if (!brokers) {
    throw new Error('KAFKA_BROKERS is not set: run the suite through `npm test`, which starts a real broker');
  }
  return brokers.split(',').map((b) => b.trim());
}

export function testKafka(clientId = 'thorax-test'): Kafka {
  return new Kafka({ clientId, brokers: testBrokers(), logLevel: logLevel.NOTHING });
}

export interface PlainRecord {
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
  partition: number;
  offset: string;
}

/** Publishes records the way a PACS would: raw bytes, a key, plain string headers. */
export async function produce(
  kafka: Kafka,
  topic: string,
  records: { key: string | null; value: Buffer | null; headers?: Record<string, string> }[],
): Promise<void> {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await producer.connect();
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: records.map((r) => ({ key: r.key, value: r.value, headers: (r.headers ?? {}) as IHeaders })),
    });
  } finally {
    await producer.disconnect();
  }
}

/**
 * Reads a topic from the beginning with a fresh consumer group until `done(records)` holds or
 * the timeout passes; returns what it read.
 */
export async function collect(
  kafka: Kafka,
  topic: string,
  done: (records: PlainRecord[]) => boolean,
  timeoutMs: number,
): Promise<PlainRecord[]> {
  const records: PlainRecord[] = [];
  const consumer: Consumer = kafka.consumer({
    groupId: `thorax-test-${topic}-${Date.now()}-${Math.random().toString(16).slice(2)}`,
    maxBytesPerPartition: 52_428_800,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let resolveDone: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (resolveDone = resolve));
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers ?? {})) if (v !== undefined) headers[k] = String(Array.isArray(v) ? v[0] : v);
      records.push({ key: message.key?.toString() ?? null, value: message.value, headers, partition, offset: message.offset });
      if (done(records)) resolveDone();
    },
  });
  const timer = setTimeout(resolveDone, timeoutMs);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  return records;
}
