import { AsyncLocalStorage } from 'node:async_hooks';
import type { Logger } from '@thorax/observability';
import type { ClientTransaction } from './client-port';
import { refusedRecordType } from './failure-policy';
import { errorChain, hasKafkaErrorType, kafkaErrorType } from './kafka-errors';
import type { OutgoingRecord, PublishOptions } from './records';

/** What a stage's consume-process-produce loop commits with (KAFKA_DELIVERY). */
export type DeliveryMode = 'exactly-once' | 'at-least-once';

/** The part of a client's transaction a TransactionScope uses. */
export type TransactionHandle = Pick<ClientTransaction, 'sendBatch' | 'sendOffsets' | 'commit' | 'abort'>;

export interface TransactionLimits {
  /** Records of one request when the buffer is flushed. */
  maxBatchRecords: number;
  /** Payload bytes buffered before they are sent (still inside the transaction). */
  maxBatchBytes: number;
}

export const DEFAULT_TRANSACTION_LIMITS: TransactionLimits = { maxBatchRecords: 500, maxBatchBytes: 16 * 1024 * 1024 };

/** Records a broker refused in earlier tries of a partition's transaction (see TransactionScope). */
export interface RefusalMemory {
  /** A refused record makes the transaction abortable (librdkafka), not only that send (kafkajs). */
  abortsTransaction: boolean;
  /** By refusalKey: the refusal, failed again without sending. */
  known: Map<string, unknown>;
}

/** What identifies an output record across tries of its transaction. */
export function refusalKey(record: OutgoingRecord): string {
  return `${record.topic}\u0000${record.key}\u0000${record.value.length}`;
}

/**
 * One Kafka transaction of a consumer's input partition: what the handlers of its records publish
 * (through the ordinary Publisher, which looks the scope up) and the input offsets, committed
 * together or not at all.
 *
 * Records published in a scope are buffered and go to the brokers in large requests at commit
 * (or when the buffer fills), so a transaction of a few hundred inputs costs a few produce
 * requests, not one per input; `publish` resolves once the records are in the transaction, and
 * they become visible to read_committed consumers with the commit. Two kinds of call are sent at
 * once, each in a request of its own, so that a broker's refusal of a record (a topic's
 * max.message.bytes) reaches the handler that published it and nothing else: `alone` calls (the
 * dead-letter copy), and every call of a `careful` scope (the retry of a transaction whose
 * buffered flush was refused). Any other send failure poisons the scope: the consumer aborts it
 * and processes its inputs again from the last committed offset.
 *
 * With librdkafka (`RefusalMemory.abortsTransaction`) a refused record leaves the transaction
 * only abortable, even when it was sent alone. Then a careful scope sends its records one at a
 * time (none shares a record batch with another), remembers each record refused that way, and
 * the next try of the transaction fails that record's publish at once without sending it: its
 * input is dead-lettered and the transaction commits, in at most one try more per refused record.
 */
export class TransactionScope {
  private buffer: OutgoingRecord[] = [];
  private bufferedBytes = 0;
  private readonly committed: (() => Promise<void>)[] = [];
  private readonly aborted: (() => void)[] = [];
  /** The failure that makes this transaction unusable; every later publish throws it. */
  failure: unknown = null;
  /** A buffered flush was refused by a broker: retry the inputs with a careful scope. */
  refused = false;
  /** Inputs with an outcome in this transaction. */
  inputs = 0;
  /** Some record entered the transaction (buffered or sent); false: it holds the offsets only. */
  private published = false;
  readonly startedAt = Date.now();

  /** Serialises a careful scope's sends when a refusal aborts the transaction (librdkafka). */
  private turn: Promise<void> = Promise.resolve();

  constructor(
    private readonly txn: TransactionHandle,
    readonly careful: boolean,
    private readonly limits: TransactionLimits = DEFAULT_TRANSACTION_LIMITS,
    private readonly memory: RefusalMemory | null = null,
  ) {}

  async publish(records: OutgoingRecord[], options: PublishOptions = {}): Promise<void> {
    if (this.failure) throw this.failure;
    if (records.length === 0) return;
    this.published = true;
    if (options.alone || this.careful) {
      await this.flush();
      if (this.careful && this.memory?.abortsTransaction) {
        await this.oneAtATime(async () => {
          for (const record of records) await this.send([record], true);
        });
        return;
      }
      for (const record of records) await this.send([record], true);
      return;
    }
    for (const record of records) {
      this.buffer.push(record);
      this.bufferedBytes += recordBytes(record);
    }
    if (this.buffer.length >= this.limits.maxBatchRecords || this.bufferedBytes >= this.limits.maxBatchBytes) await this.flush();
  }

  /** Runs `fn` after the transaction commits, `onAbort` when it is abandoned instead. */
  afterCommit(fn: () => Promise<void>, onAbort?: () => void): void {
    this.committed.push(fn);
    if (onAbort) this.aborted.push(onAbort);
  }

  /** The transaction will not commit: the abandon callbacks run (once). */
  abandoned(): void {
    for (const fn of this.aborted.splice(0)) {
      try {
        fn();
      } catch {
        // bookkeeping only; nothing to undo in Kafka
      }
    }
  }

  /** Sends what is buffered, in requests within the limits. */
  async flush(): Promise<void> {
    while (this.buffer.length > 0) {
      if (this.failure) throw this.failure;
      const chunk: OutgoingRecord[] = [];
      let bytes = 0;
      while (this.buffer.length > 0 && chunk.length < this.limits.maxBatchRecords) {
        const next = this.buffer[0] as OutgoingRecord;
        const size = recordBytes(next);
        if (chunk.length > 0 && bytes + size > this.limits.maxBatchBytes) break;
        chunk.push(next);
        bytes += size;
        this.buffer.shift();
      }
      this.bufferedBytes -= bytes;
      await this.send(chunk, false);
    }
  }

  /**
   * Flushes, adds the input offset to the transaction and commits it; then the after-commit work.
   * Answers whether a transaction was committed: when nothing was published in it and
   * `withoutRecords` is given, that commits the offset instead, outside any transaction (a plain
   * group commit costs the broker one request and one append, a transaction four requests, its
   * log's appends and a marker), and the handle is left as it was, unused, for the next scope.
   */
  async commit(
    groupId: string,
    topic: string,
    partition: number,
    nextOffset: string,
    log: Logger,
    withoutRecords?: () => Promise<void>,
  ): Promise<boolean> {
    await this.flush();
    if (this.failure) throw this.failure;
    const transactional = this.published || !withoutRecords;
    if (transactional) {
      await whileConcurrent(() =>
        this.txn.sendOffsets({ consumerGroupId: groupId, topics: [{ topic, partitions: [{ partition, offset: nextOffset }] }] }),
      );
      await this.txn.commit();
    } else {
      await withoutRecords();
    }
    for (const fn of this.committed) {
      await fn().catch((error: unknown) => log.warn({ err: error }, 'work after a transaction commit failed'));
    }
    return transactional;
  }

  /** Best effort: a producer that cannot abort is replaced, and its successor's start aborts it. */
  async abort(): Promise<void> {
    this.buffer = [];
    this.bufferedBytes = 0;
    await this.txn.abort();
  }

  private async oneAtATime(fn: () => Promise<void>): Promise<void> {
    const previous = this.turn;
    let done: () => void = () => undefined;
    this.turn = new Promise<void>((resolve) => (done = resolve));
    await previous;
    try {
      await fn();
    } finally {
      done();
    }
  }

  private async send(records: OutgoingRecord[], single: boolean): Promise<void> {
    const isolated = single && this.careful && this.memory?.abortsTransaction === true;
    if (isolated) {
      const known = this.memory?.known.get(refusalKey(records[0] as OutgoingRecord));
      if (known !== undefined) throw known;
    }
    const byTopic = new Map<string, OutgoingRecord[]>();
    for (const record of records) {
      const list = byTopic.get(record.topic) ?? [];
      list.push(record);
      byTopic.set(record.topic, list);
    }
    try {
      await whileConcurrent(() => this.txn.sendBatch({
        topicMessages: [...byTopic].map(([topic, list]) => ({
          topic,
          messages: list.map((r) => ({ key: r.key, value: r.value, headers: r.headers ?? {} })),
        })),
      }));
    } catch (error) {
      if (this.memory?.abortsTransaction && refusedRecordType(error) !== null) {
        // librdkafka: the transaction can only be aborted now. The next try is careful, and a
        // record refused on its own there is failed at once from then on.
        if (isolated) this.memory.known.set(refusalKey(records[0] as OutgoingRecord), error);
        this.refused = true;
        this.failure ??= error;
        throw error;
      }
      // A refused single record was never appended and leaves the producer's sequence numbers
      // where they were: the transaction goes on and the caller decides (dead letter). Anything
      // else may have written part of a request: the transaction must be aborted.
      if (!(single && refusedRecordType(error) !== null)) {
        this.failure ??= error;
        if (!single && refusedRecordType(error) !== null) this.refused = true;
      }
      throw error;
    }
  }
}

/**
 * One try of a handler inside a transaction: what it publishes is held until the try succeeds
 * (`accept`, into the transaction) or dropped when it fails (`discard`), so a try retried in
 * place never leaves its first outputs behind. `alone` calls (the dead-letter copy) cannot be
 * held back and go out at once; a failure after one of those fails the whole transaction.
 */
export class Attempt {
  private records: OutgoingRecord[] = [];
  private readonly committed: (() => Promise<void>)[] = [];
  private readonly aborted: (() => void)[] = [];
  private sent = false;

  constructor(readonly scope: TransactionScope) {}

  async publish(records: OutgoingRecord[], options: PublishOptions = {}): Promise<void> {
    if (this.scope.failure) throw this.scope.failure;
    if (options.alone) {
      this.sent = true;
      await this.scope.publish(records, options);
      return;
    }
    this.records.push(...records);
  }

  afterCommit(fn: () => Promise<void>, onAbort?: () => void): void {
    this.committed.push(fn);
    if (onAbort) this.aborted.push(onAbort);
  }

  /** The try succeeded: its records join the transaction (a careful scope sends them now). */
  async accept(): Promise<void> {
    const records = this.records;
    this.records = [];
    try {
      if (records.length > 0) await this.scope.publish(records);
    } catch (error) {
      this.discard();
      throw error;
    }
    this.committed.forEach((fn, i) => this.scope.afterCommit(fn, i < this.aborted.length ? this.aborted[i] : undefined));
    this.committed.length = 0;
    this.aborted.length = 0;
  }

  /** The try failed: its held records go nowhere; what it already sent fails the transaction. */
  discard(): void {
    this.records = [];
    this.committed.length = 0;
    for (const fn of this.aborted.splice(0)) {
      try {
        fn();
      } catch {
        // bookkeeping only
      }
    }
    if (this.sent) this.scope.failure ??= new Error('a failed try had already sent records in this transaction');
  }
}

interface Context {
  scope: TransactionScope;
  attempt: Attempt | null;
}

const contexts = new AsyncLocalStorage<Context>();

/** The transaction the current record is handled in, if any (exactly-once consumers only). */
export function currentTransaction(): TransactionScope | undefined {
  return contexts.getStore()?.scope;
}

/** The try in progress, if any (exactly-once consumers only). */
export function currentAttempt(): Attempt | null {
  return contexts.getStore()?.attempt ?? null;
}

/** Runs `fn` with `scope` as the current transaction of everything it calls and awaits. */
export function inTransaction<R>(scope: TransactionScope, fn: () => R): R {
  return contexts.run({ scope, attempt: null }, fn);
}

/**
 * Runs one try of `fn` in the current transaction (at once when there is none): its records are
 * accepted when it resolves, dropped when it throws.
 */
export async function tryInTransaction<R>(fn: () => Promise<R>): Promise<R> {
  const scope = currentTransaction();
  if (!scope) return fn();
  const attempt = new Attempt(scope);
  let result: R;
  try {
    result = await contexts.run({ scope, attempt }, fn);
  } catch (error) {
    attempt.discard();
    throw error;
  }
  await attempt.accept();
  return result;
}

/** Publishes into the current try or transaction; false when there is none. */
export function publishInTransaction(records: OutgoingRecord[], options: PublishOptions): Promise<void> | null {
  const context = contexts.getStore();
  if (!context) return null;
  return context.attempt ? context.attempt.publish(records, options) : context.scope.publish(records, options);
}

/**
 * Runs `fn` once what the current record published is committed: after its transaction commits
 * under exactly-once delivery (never if it aborts; the record is then processed again), at once
 * otherwise (its records are already acknowledged). For bookkeeping that must not claim more than
 * Kafka holds, e.g. marking outbox rows published. `onAbort` runs instead when the transaction is
 * abandoned.
 */
export async function whenCommitted(fn: () => Promise<void>, onAbort?: () => void): Promise<void> {
  const context = contexts.getStore();
  if (!context) await fn();
  else if (context.attempt) context.attempt.afterCommit(fn, onAbort);
  else context.scope.afterCommit(fn, onAbort);
}

/**
 * Runs `fn` again while the transaction coordinator answers CONCURRENT_TRANSACTIONS: the previous
 * transaction of this producer is still completing (its markers are being written) when the next
 * one adds partitions or offsets; kafkajs 2.2.4 gives that error up at once. Safe to repeat: the
 * coordinator refused the request before anything was written.
 */
export async function whileConcurrent<R>(fn: () => Promise<R>, attempts = 50): Promise<R> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= attempts || !hasKafkaErrorType(error, 'CONCURRENT_TRANSACTIONS')) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.min(200, 10 * attempt)));
    }
  }
}

/** Kafka's answer to a producer replaced by another with the same transactional id. */
export function isFencedError(error: unknown): boolean {
  return errorChain(error, 6).some((e) => {
    const type = kafkaErrorType(e);
    return type === 'INVALID_PRODUCER_EPOCH' || type === 'PRODUCER_FENCED' || (e as { code?: unknown }).code === 90;
  });
}

function recordBytes(record: OutgoingRecord): number {
  let bytes = Buffer.byteLength(record.key) + record.value.length;
  for (const [name, value] of Object.entries(record.headers ?? {})) bytes += Buffer.byteLength(name) + Buffer.byteLength(String(value));
  return bytes;
}
