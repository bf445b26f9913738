import type { RecordSender, TopicMessages } from './client-port';
import { refusedRecordType } from './failure-policy';
import type { OutgoingRecord, Publisher, PublishOptions } from './records';
import { publishInTransaction } from './transactions';

export interface PublisherOptions {
  /**
   * How long records wait for companions before a send (Kafka's linger.ms). Records published
   * by concurrent handlers within this window go to the broker in one request; each caller's
   * promise still resolves only once its own records are acknowledged.
   */
  lingerMs: number;
  /** Send at once when this many records are waiting; also the most one request carries. */
  maxBatchRecords: number;
  /**
   * Most payload bytes (keys, values, headers) one request carries, so that what gathers while
   * a request is in flight never exceeds the broker's request or batch limits; a single larger
   * publish call still goes alone. Default 16 MiB.
   */
  maxBatchBytes?: number;
  /**
   * At most one request in flight: records published meanwhile wait and go together in the next
   * one. The idempotent producer needs it (kafkajs rolls a failed request's sequence numbers back,
   * so a concurrent request must not take them).
   */
  serial?: boolean;
  /**
   * Serial mode: runs after a failed request and before the next one, e.g. to replace an
   * idempotent producer whose sequence state is no longer known. Its own failure is ignored.
   */
  afterFailure?: (error: unknown) => Promise<void>;
}

interface Waiting {
  records: OutgoingRecord[];
  bytes: number;
  resolve: () => void;
  reject: (error: unknown) => void;
  /** Sent in a request of its own (asked for, or after a coalesced request was refused). */
  alone?: boolean;
}

type SendingProducer = RecordSender;

const DEFAULT_MAX_BATCH_BYTES = 16 * 1024 * 1024;

function recordBytes(record: OutgoingRecord): number {
  let bytes = Buffer.byteLength(record.key) + record.value.length;
  for (const [name, value] of Object.entries(record.headers ?? {}))
    bytes += Buffer.byteLength(name) + Buffer.byteLength(String(value));
  return bytes;
}

/** Records as one send, grouped by topic. */
function toBatch(records: OutgoingRecord[]): { topicMessages: TopicMessages[] } {
  const byTopic = new Map<string, OutgoingRecord[]>();
  for (const record of records) {
    const list = byTopic.get(record.topic) ?? [];
    list.push(record);
    byTopic.set(record.topic, list);
  }
  return {
    topicMessages: [...byTopic].map(([topic, list]) => ({
      topic,
      messages: list.map((r) => ({ key: r.key, value: r.value, headers: r.headers ?? {} })),
    })),
  };
}

/**
 * Publisher over a client's producer (acks from all in-sync replicas), concurrent calls coalesced.
 * Called while an exactly-once consumer handles a record, it publishes into that record's
 * transaction instead (TransactionScope), so stages keep one Publisher for both delivery modes.
 */
export class KafkaPublisher implements Publisher {
  private queue: Waiting[] = [];
  private queued = 0;
  private timer: NodeJS.Timeout | null = null;
  private sending = false;

  constructor(
    private producer: SendingProducer,
    private readonly options: PublisherOptions = { lingerMs: 2, maxBatchRecords: 500 },
  ) {}

  /** Sends later requests through another producer (the current request, if any, finishes first). */
  useProducer(producer: SendingProducer): void {
    this.producer = producer;
  }

  publish(records: OutgoingRecord[], options: PublishOptions = {}): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    const transactional = publishInTransaction(records, options);
    if (transactional) return transactional;
    return new Promise<void>((resolve, reject) => {
      const bytes = records.reduce((sum, r) => sum + recordBytes(r), 0);
      this.queue.push({ records, bytes, resolve, reject, ...(options.alone ? { alone: true } : {}) });
      this.queued += records.length;
      if (this.queued >= this.options.maxBatchRecords || this.options.lingerMs === 0 || this.producer.batchesItself) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.options.lingerMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // Serial: the request in flight flushes what has gathered when it completes.
    if (this.options.serial && this.sending) return;
    if (this.queue.length === 0) return;
    if (this.producer.batchesItself && !this.options.serial) {
      // librdkafka: every call is a send of its own (the client batches them into requests), so
      // a refused record fails its own call only.
      const calls = this.queue;
      this.queue = [];
      this.queued = 0;
      for (const w of calls) void this.producer.sendBatch(toBatch(w.records)).then(() => w.resolve(), w.reject);
      return;
    }
    // Whole publish calls, in order, up to the request limits (at least one call).
    const maxBytes = this.options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
    let count = 0;
    let records = 0;
    let bytes = 0;
    for (const w of this.queue) {
      if (
        count > 0 &&
        (w.alone || records + w.records.length > this.options.maxBatchRecords || bytes + w.bytes > maxBytes)
      )
        break;
      count += 1;
      records += w.records.length;
      bytes += w.bytes;
      if (w.alone) break;
    }
    const waiting = this.queue.slice(0, count);
    this.queue = this.queue.slice(count);
    this.queued -= records;
    // Not serial: what did not fit goes in a request of its own at once.
    if (!this.options.serial && this.queue.length > 0) queueMicrotask(() => this.flush());
    this.sending = true;
    void this.producer
      .sendBatch(toBatch(waiting.flatMap((w) => w.records)))
      .then(
        () => {
          waiting.forEach((w) => w.resolve());
          return null;
        },
        (error: unknown) => {
          if (waiting.length > 1 && refusedRecordType(error) !== null) {
            // The broker refused a record for good, and fails the whole request for it: each
            // call goes again alone, so only the call that holds the refused record fails.
            this.queue = [...waiting.map((w) => ({ ...w, alone: true })), ...this.queue];
            this.queued += records;
            if (!this.options.serial) queueMicrotask(() => this.flush());
          } else {
            waiting.forEach((w) => w.reject(error));
          }
          return error;
        },
      )
      .then(async (error) => {
        if (error !== null && this.options.serial && this.options.afterFailure) {
          await this.options.afterFailure(error).catch(() => undefined);
        }
      })
      .finally(() => {
        this.sending = false;
        if (this.options.serial && this.queue.length > 0) this.flush();
      });
  }
}
