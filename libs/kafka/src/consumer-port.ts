import { type Stage, type StudyInfo, type StudyRef, studyInfoFromRef, ThoraxError } from '@thorax/contracts';
import type { Logger } from '@thorax/observability';
import type { RetryPolicy } from './failure-policy';

/**
 * The consumer port: apps consume topics through this and never see the Kafka client. Delivery
 * guarantees are those of docs/contract.md "Delivery guarantees": at-least-once, an offset is
 * committed only after its record has an outcome (ok, dead-lettered) whose effects are
 * acknowledged or durable, offsets of a partition resolve strictly in order.
 */
export interface ConsumerPort {
  /** One record at a time per partition (up to `maxInFlightPerPartition` concurrently). */
  consume<T>(spec: ConsumerSpec<T>, handler: MessageHandler<T>): Consumption;
  /** Many records per call, from all partitions of one fetch; see BatchHandler. */
  consumeBatches<T>(spec: BatchConsumerSpec<T>, handler: BatchHandler<T>): Consumption;
}

/** Nest injection token of the ConsumerPort (provided by KafkaModule). */
export const CONSUMERS = Symbol('thorax.consumers');

/** Where a record sits in its topic: for logs and error events, no Kafka client types. */
export interface RecordPosition {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  /** Broker or producer timestamp, ms since epoch. */
  timestamp: number;
}

/** One decoded record, as a handler sees it. */
export interface Delivery<T> {
  message: T;
  /** Headers to put on what this record produces (trace context, receipt time; docs/contract.md "Headers"). */
  forward: Record<string, string>;
  /** Every header of the record, decoded to strings (lower-case names). */
  headers: Record<string, string>;
  position: RecordPosition;
  /**
   * Bound to topic, partition, offset and id; built only when first read (a pino child logger
   * and a traceparent parse per record cost more than the record's hop): read it for warnings,
   * and for debug lines only behind `isLevelEnabled('debug')` of the app's logger.
   */
  readonly log: Logger;
}

/** What the error findings event of a dead-lettered record says about it. */
export interface FailureContext {
  id: string;
  study?: StudyInfo;
  receivedAt?: Date;
}

export interface ConsumerSpec<T> {
  groupId: string;
  topic: string;
  stage: Stage;
  /** Where error events go; null for the results stage, which records failures itself. */
  findingsTopic: string | null;
  /**
   * The record's value as a message. A throw dead-letters the record: a ThoraxError keeps its
   * code, anything else becomes INVALID_MESSAGE. See `protobufDecoder`.
   */
  decode(value: Buffer, headers: Record<string, string>): T;
  /**
   * Describes a record for its error event; `message` is null when the value did not decode.
   * Must not throw. Default: the record key as id, the record timestamp as receipt time.
   */
  describe?(message: T | null, position: RecordPosition, headers: Record<string, string>): FailureContext;
  retry?: RetryPolicy;
  partitionsConsumedConcurrently?: number;
  /** Records of one partition handled concurrently (offsets still commit in order). Default 1. */
  maxInFlightPerPartition?: number;
  maxBytesPerPartition?: number;
  sessionTimeoutMs?: number;
  lagIntervalMs?: number;
}

export interface MessageHandler<T> {
  /**
   * Handles one record. Resolves only after everything it produced is acknowledged by Kafka (or
   * durably stored). Throws a ThoraxError for classified failures (see `decide`).
   */
  handle(delivery: Delivery<T>): Promise<void>;
}

export interface BatchConsumerSpec<T> extends ConsumerSpec<T> {
  /** Most records in one handleBatch call. Default 500. */
  maxBatchRecords?: number;
  /**
   * How long the first record of a batch waits for the partitions fetched with it to add theirs.
   * Default 5 ms.
   */
  lingerMs?: number;
}

/** The outcome of one record of a batch: done (durable), or failed with the error that says why. */
export type ItemResult = { ok: true } | { ok: false; error: unknown };

export const ITEM_OK: ItemResult = Object.freeze({ ok: true });

/**
 * Handles records in batches (e.g. one database transaction or multi-row insert per call).
 *
 * - A call carries the decoded records of one fetch, from every partition consumed concurrently,
 *   up to `maxBatchRecords`; records of a partition appear in offset order. Records that did not
 *   decode never reach it (they are dead-lettered on their own).
 * - It resolves with exactly one ItemResult per delivery, in the same order. An `ok` result
 *   promises that the record's effects are durable (committed) or acknowledged by Kafka.
 * - A failed item gets its own outcome like a single record (docs/contract.md "Delivery
 *   guarantees"): retried alone, as a batch of one, with backoff; dead-lettered when permanent or
 *   out of attempts; or given back to Kafka (a broker failure, or a `redeliver` ThoraxError after
 *   its in-place retries). Its batch mates keep their `ok`: they are neither lost nor handled twice.
 * - Throwing instead of resolving fails every item of the call with that error; each is then
 *   retried alone, so one poison record cannot fail its batch mates for good.
 * - Offsets are resolved per partition in order, and committed, only after every item up to them
 *   has an outcome. A crash before the commit redelivers the whole batch: handling must be
 *   idempotent (results keys its rows by event id).
 */
export interface BatchHandler<T> {
  handleBatch(deliveries: readonly Delivery<T>[]): Promise<readonly ItemResult[]>;
}

/** A running consumer, as its app sees it: backpressure only (start and drain are the port's). */
export interface Consumption {
  /** Stops fetching new records (in-flight ones finish); used for backpressure. */
  pause(): void;
  resume(): void;
}

/** A protobuf message type as generated under libs/contracts (ts-proto). */
export interface ProtobufType<T> {
  decode(input: Uint8Array): T;
}

/**
 * A `decode` for ConsumerSpec: the value as a `type` message carrying an id; an empty value, one
 * that does not parse, or a message without id is INVALID_MESSAGE of `stage`.
 */
export function protobufDecoder<T extends { id: string }>(
  type: ProtobufType<T>,
  name: string,
  stage: Stage,
): (value: Buffer) => T {
  return (value) => {
    if (value.length === 0) throw new ThoraxError('INVALID_MESSAGE', `empty record, expected a ${name}`, { stage });
    let message: T;
    try {
      message = type.decode(value);
    } catch (error) {
      throw new ThoraxError('INVALID_MESSAGE', `not a ${name}: ${(error as Error).message}`, { stage, cause: error });
    }
    if (!message.id) throw new ThoraxError('INVALID_MESSAGE', `${name} without id`, { stage });
    return message;
  };
}

/**
 * A `describe` for ConsumerSpec, for messages carrying id, study and receipt time (ImageAccepted,
 * PreprocessedImage); the record key when the value did not decode.
 */
export function describeStudyMessage(
  message: { id: string; study?: StudyRef | undefined; receivedAt?: Date | undefined } | null,
  position: RecordPosition,
): FailureContext {
  if (!message) return { id: position.key || `unkeyed:${position.topic}:${position.partition}:${position.offset}` };
  return {
    id: message.id,
    study: studyInfoFromRef(message.study),
    ...(message.receivedAt ? { receivedAt: message.receivedAt } : {}),
  };
}
