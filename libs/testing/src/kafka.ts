import { Kafka, logLevel, type Message, Partitioners, type Consumer, type IHeaders, type Producer } from 'kafkajs';

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
  // Idempotent: a send retried on a loaded machine (a request timeout after the broker wrote it)
  // must not put a record in twice; the tests count what comes out.
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
    idempotent: true,
    maxInFlightRequests: 1,
  });
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

export interface CollectOptions {
  /**
   * Once `done` holds, reading goes on until no record has arrived for this long, so that a
   * duplicate or late record is seen rather than cut off (default 3000 ms; 0 returns at once).
   */
  quietMs?: number;
}

/**
 * Reads a topic from the beginning with a fresh consumer group until `done(records)` holds and
 * the topic has then been quiet for `quietMs`, or the timeout passes; returns what it read.
 */
export async function collect(
  kafka: Kafka,
  topic: string,
  done: (records: PlainRecord[]) => boolean,
  timeoutMs: number,
  options: CollectOptions = {},
): Promise<PlainRecord[]> {
  const quietMs = options.quietMs ?? 3000;
  const records: PlainRecord[] = [];
  const consumer: Consumer = kafka.consumer({
    groupId: `thorax-test-${topic}-${Date.now()}-${Math.random().toString(16).slice(2)}`,
    maxBytesPerPartition: 52_428_800,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let resolveDone: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (resolveDone = resolve));
  let satisfied = false;
  let quiet: NodeJS.Timeout | null = null;
  const settle = () => {
    if (quiet) clearTimeout(quiet);
    quiet = setTimeout(resolveDone, quietMs);
  };
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers ?? {})) if (v !== undefined) headers[k] = String(Array.isArray(v) ? v[0] : v);
      records.push({ key: message.key?.toString() ?? null, value: message.value, headers, partition, offset: message.offset });
      if (!satisfied && done(records)) satisfied = true;
      if (satisfied) settle();
    },
  });
  // `done` may already hold for no records at all.
  if (done(records)) {
    satisfied = true;
    settle();
  }
  const timer = setTimeout(resolveDone, timeoutMs);
  await finished;
  clearTimeout(timer);
  if (quiet) clearTimeout(quiet);
  await consumer.disconnect();
  return records;
}

/** How many records carry each of `ids` as their key (0 for an id never seen). */
export function countByKey(records: PlainRecord[], ids: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, 0);
  for (const r of records) if (r.key !== null && counts.has(r.key)) counts.set(r.key, (counts.get(r.key) ?? 0) + 1);
  return counts;
}

/**
 * Throws unless every one of `ids` occurs exactly once among `records`, naming the ids that are
 * missing and those that came more than once (with their counts).
 */
export function expectOncePerId(records: PlainRecord[], ids: Iterable<string>, what = 'records'): void {
  const counts = countByKey(records, ids);
  const missing = [...counts].filter(([, n]) => n === 0).map(([id]) => id);
  const repeated = [...counts].filter(([, n]) => n > 1).map(([id, n]) => `${id} ×${n}`);
  if (missing.length > 0 || repeated.length > 0) {
    const list = (xs: string[]) => `${xs.slice(0, 20).join(', ')}${xs.length > 20 ? `, … (${xs.length})` : ''}`;
    throw new Error(
      `expected exactly one of ${what} per id (${counts.size} ids): ` +
        `${missing.length} missing${missing.length ? ` [${list(missing)}]` : ''}, ` +
        `${repeated.length} repeated${repeated.length ? ` [${list(repeated)}]` : ''}`,
    );
  }
}

/**
 * Reads `topic` until every one of `ids` has a record and the topic has been quiet for
 * `quietMs`; then requires exactly one record per id (a duplicate or a loss fails) and returns
 * them by id. Records of other keys are ignored.
 */
export async function collectOncePerId(
  kafka: Kafka,
  topic: string,
  ids: Iterable<string>,
  timeoutMs: number,
  options: CollectOptions = {},
): Promise<Map<string, PlainRecord>> {
  const want = new Set(ids);
  const seen = new Set<string>();
  const records = await collect(
    kafka,
    topic,
    (rs) => {
      const last = rs[rs.length - 1];
      if (last?.key && want.has(last.key)) seen.add(last.key);
      return seen.size === want.size;
    },
    timeoutMs,
    options,
  );
  expectOncePerId(records, want, `records on ${topic}`);
  const byId = new Map<string, PlainRecord>();
  for (const r of records) if (r.key !== null && want.has(r.key)) byId.set(r.key, r);
  return byId;
}

/**
 * A PACS that publishes each batch exactly once: every send is a Kafka transaction of a
 * transactional producer, and a send that failed is retried by a fresh producer with the same
 * transactional id, whose start aborts whatever the failed one left open. Consumers reading
 * read_committed (every Thorax stage) then see each input once, however often it was resent.
 */
export class ExactlyOncePublisher {
  private producer: Producer | null = null;
  /** Sends that failed and were made again. */
  resends = 0;

  constructor(
    private readonly kafka: Kafka,
    private readonly transactionalId: string,
  ) {}

  async send(topic: string, messages: Message[], attempts = 20): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        const producer = await this.connected();
        const txn = await producer.transaction();
        try {
          await txn.send({ topic, acks: -1, messages });
          await txn.commit();
        } catch (error) {
          await txn.abort().catch(() => undefined);
          throw error;
        }
        return;
      } catch (error) {
        this.resends += 1;
        await this.disconnect();
        if (attempt >= attempts) throw error;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  async disconnect(): Promise<void> {
    const producer = this.producer;
    this.producer = null;
    await producer?.disconnect().catch(() => undefined);
  }

  private async connected(): Promise<Producer> {
    if (this.producer) return this.producer;
    const producer = this.kafka.producer({
      transactionalId: this.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
    });
    await producer.connect();
    this.producer = producer;
    return producer;
  }
}
