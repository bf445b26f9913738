import type { Logger } from '@thorax/observability';
import { type Consumer, type Kafka, Partitioners, type Producer, type Transaction } from 'kafkajs';
import { refusedRecordType } from './failure-policy';
import { decodeHeaders, type OutgoingRecord } from './records';
import { isFencedError, whileConcurrent } from './transactions';

/** What an outbox relay needs to know of a record already committed on its topic. */
export interface CommittedRecord {
  partition: number;
  offset: string;
  key: string | null;
  headers: Record<string, string>;
}

export interface TransactionalOutboxSpec {
  /** The one topic the outbox publishes to. */
  topic: string;
  /**
   * Fixed across restarts and replicas (e.g. `<consumer group>-fhir`): whoever starts a producer
   * with it fences every earlier holder, so at most one instance can commit at a time.
   */
  transactionalId: string;
  /** Kafka aborts a transaction left open this long by a producer that died inside it. */
  transactionTimeoutMs?: number;
  /** Payload bytes per produce request inside a transaction (under the topic's max.message.bytes). */
  maxRequestBytes?: number;
}

/** How a failed outbox operation must be handled by its caller. */
export type OutboxFailure =
  /** Another instance started a producer with the same transactional id: stop publishing. */
  | 'fenced'
  /** The broker refused a record for good (larger than the topic allows): nothing was committed. */
  | 'refused'
  /** Anything else (broker away, timeout, commit outcome unknown): start over with `fence`. */
  | 'retry';

export function outboxFailure(error: unknown): OutboxFailure {
  if (isFencedError(error)) return 'fenced';
  if (refusedRecordType(error) !== null) return 'refused';
  return 'retry';
}

const DEFAULT_TRANSACTION_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_REQUEST_BYTES = 512 * 1024;

/**
 * The Kafka side of a transactional outbox (a store whose rows must reach one topic exactly
 * once, e.g. results' FHIR bundles): a producer with a fixed transactional id, a reader of what
 * is committed on the topic, and one transaction per publish call.
 *
 * The protocol it serves (docs/kafka-cluster.md "Exactly-once", FHIR topic):
 * 1. `fence()` starts the producer. The broker bumps the id's epoch, so a zombie holder can
 *    commit nothing more, and completes or aborts the transaction it left open before it answers.
 * 2. `readCommitted(since)` then reads the topic read_committed up to its end as of that moment:
 *    everything any earlier holder committed is there, and nothing it can still add.
 * 3. `publish(records)` commits records in one transaction; the store marks them afterwards. A
 *    crash between the commit and the mark is repaired by the next holder's step 2.
 */
export class TransactionalOutboxPublisher {
  private producer: Producer | null = null;
  /** The transaction `fence` began (its InitProducerId did the fencing), used by the next publish. */
  private opened: Transaction | null = null;
  private readonly timeoutMs: number;
  private readonly maxRequestBytes: number;

  constructor(
    private readonly kafka: Kafka,
    readonly spec: TransactionalOutboxSpec,
    private readonly log: Logger,
  ) {
    this.timeoutMs = spec.transactionTimeoutMs ?? DEFAULT_TRANSACTION_TIMEOUT_MS;
    this.maxRequestBytes = spec.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  }

  get topic(): string {
    return this.spec.topic;
  }

  /**
   * (Re)starts the transactional producer: InitProducerId fences every earlier holder of the id
   * (this process's previous producer included) and settles its open transaction first.
   */
  async fence(): Promise<void> {
    await this.close();
    const producer = this.kafka.producer({
      transactionalId: this.spec.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: this.timeoutMs,
      allowAutoTopicCreation: false,
      retry: { retries: 10 },
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    this.producer = producer;
    await producer.connect();
    // kafkajs 2.2.4 sends the transactional InitProducerId with the first transaction, not on
    // connect (which initialises a plain idempotent producer id that fences nothing): begin one
    // here, so that fencing is done when this resolves, and keep it for the first publish.
    this.opened = await producer.transaction();
    this.log.info({ transactionalId: this.spec.transactionalId, topic: this.spec.topic }, 'outbox producer started; earlier holders fenced');
  }

  /**
   * Commits the records in one transaction (in requests of at most maxRequestBytes). Resolves
   * once the commit is acknowledged; throws otherwise, after aborting what it can. After a throw
   * the outcome of the commit may be unknown: call `fence` and read the topic before going on.
   */
  async publish(records: readonly OutgoingRecord[]): Promise<void> {
    if (records.length === 0) return;
    const producer = this.producer;
    if (!producer) throw new Error('outbox producer not started (fence first)');
    const transaction = this.opened ?? (await producer.transaction());
    this.opened = null;
    try {
      for (const chunk of chunks(records, this.maxRequestBytes)) {
        await whileConcurrent(() =>
          transaction.sendBatch({
            acks: -1,
            topicMessages: [
              {
                topic: this.spec.topic,
                messages: chunk.map((r) => ({ key: r.key, value: r.value, headers: r.headers ?? {} })),
              },
            ],
          }),
        );
      }
      await transaction.commit();
    } catch (error) {
      if (transaction.isActive()) await transaction.abort().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Reads every record committed on the topic from the first offset at or after `sinceMs` (record
   * timestamp) to the end offsets as of the call, with read_committed isolation, and hands each
   * to `onRecord`. Call it after `fence`, so that no transaction of this id is still open. A
   * throwaway consumer group (never committing offsets, so the broker drops it when it leaves)
   * is assigned every partition and positioned by seek. Fails after `timeoutMs`.
   */
  async readCommitted(
    sinceMs: number,
    onRecord: (record: CommittedRecord) => void,
    timeoutMs = 120_000,
  ): Promise<{ records: number; partitions: number }> {
    const topic = this.spec.topic;
    const admin = this.kafka.admin();
    await admin.connect();
    let starts: { partition: number; offset: string }[];
    let ends: { partition: number; high: string }[];
    try {
      starts = await admin.fetchTopicOffsetsByTimestamp(topic, Math.max(0, Math.floor(sinceMs)));
      ends = (await admin.fetchTopicOffsets(topic)).map((p) => ({ partition: p.partition, high: p.high }));
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    const endOf = new Map(ends.map((e) => [e.partition, BigInt(e.high)]));
    // Partitions still to read up to their end offset (exclusive) and where reading starts.
    const remaining = new Map<number, bigint>();
    for (const { partition, offset } of starts) {
      const end = endOf.get(partition) ?? 0n;
      if (BigInt(offset) < end) remaining.set(partition, end);
    }
    if (remaining.size === 0) return { records: 0, partitions: 0 };
    const partitions = remaining.size;

    const groupId = `${this.spec.transactionalId}-reconcile-${process.pid}-${Date.now().toString(36)}`;
    const consumer: Consumer = this.kafka.consumer({
      groupId,
      readUncommitted: false,
      allowAutoTopicCreation: false,
      sessionTimeout: 30_000,
      heartbeatInterval: 3_000,
      maxWaitTimeInMs: 250,
      maxBytesPerPartition: 10 * 1024 * 1024,
    });
    let records = 0;
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    // Offsets are reached when a fetch's last offset (a record, or the commit marker after it) is the end's predecessor.
    const reached = (partition: number, lastOffset: string) => {
      const end = remaining.get(partition);
      if (end !== undefined && BigInt(lastOffset) >= end - 1n) {
        remaining.delete(partition);
        if (remaining.size === 0) finish();
      }
    };
    consumer.on(consumer.events.END_BATCH_PROCESS, (event) => {
      if (event.payload.topic === topic) reached(event.payload.partition, event.payload.lastOffset);
    });
    let timer: NodeJS.Timeout | null = null;
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          const end = endOf.get(batch.partition) ?? 0n;
          for (const message of batch.messages) {
            if (BigInt(message.offset) >= end) break;
            records += 1;
            onRecord({
              partition: batch.partition,
              offset: message.offset,
              key: message.key ? message.key.toString('utf8') : null,
              headers: decodeHeaders(message.headers),
            });
          }
          reached(batch.partition, batch.lastOffset());
        },
      });
      // Every partition positioned explicitly: those with nothing to read at their end.
      for (const { partition, offset } of starts) {
        const end = endOf.get(partition) ?? 0n;
        consumer.seek({ topic, partition, offset: BigInt(offset) < end ? offset : end.toString() });
      }
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`reading ${topic} read_committed did not reach its end in ${timeoutMs} ms (${remaining.size} partitions left)`)),
          timeoutMs,
        );
      });
      await Promise.race([finished, timedOut]);
    } finally {
      if (timer) clearTimeout(timer);
      await consumer.disconnect().catch(() => undefined);
    }
    return { records, partitions };
  }

  async close(): Promise<void> {
    const producer = this.producer;
    const opened = this.opened;
    this.producer = null;
    this.opened = null;
    if (opened?.isActive()) await opened.abort().catch(() => undefined);
    if (producer) await producer.disconnect().catch(() => undefined);
  }
}

/** Records in order, cut where a request would pass `maxBytes` (at least one record each). */
function chunks(records: readonly OutgoingRecord[], maxBytes: number): OutgoingRecord[][] {
  const out: OutgoingRecord[][] = [];
  let current: OutgoingRecord[] = [];
  let bytes = 0;
  for (const record of records) {
    let size = Buffer.byteLength(record.key) + record.value.length;
    for (const [name, value] of Object.entries(record.headers ?? {})) size += Buffer.byteLength(name) + Buffer.byteLength(String(value));
    if (current.length > 0 && bytes + size > maxBytes) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(record);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}
