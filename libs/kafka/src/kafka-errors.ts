import { KafkaJSError } from 'kafkajs';
import { loadedConfluent } from './rdkafka/confluent-module';

/**
 * Kafka error names as both clients report them. kafkajs names a broker's error by its protocol
 * name in `type` (`MESSAGE_TOO_LARGE`); @confluentinc/kafka-javascript (librdkafka) puts
 * librdkafka's name of the code there (`ERR_MSG_SIZE_TOO_LARGE`, and `ERR__SSL` for its local
 * errors, with two underscores) and the number in `code`. `kafkaErrorType` answers the protocol
 * name for both, and `_SSL`-style names for librdkafka's local errors, so one classification
 * (refused records, fencing, connection failures) serves both clients.
 */

/**
 * An error of a Kafka client library (a broker or connection failure), not of a handler: kafkajs's
 * KafkaJSError, or @confluentinc/kafka-javascript's own class of that name. Such a failure passes
 * by (the record is redelivered), it is never a reason to dead-letter a record.
 */
export function isKafkaClientError(error: unknown): boolean {
  if (error instanceof KafkaJSError) return true;
  const confluent = loadedConfluent();
  return confluent !== null && error instanceof confluent.KafkaJSError;
}

/** librdkafka names that differ from the Kafka protocol's. */
const LIBRDKAFKA_RENAMES: Readonly<Record<string, string>> = {
  MSG_SIZE_TOO_LARGE: 'MESSAGE_TOO_LARGE',
  INVALID_MSG: 'CORRUPT_MESSAGE',
  TOPIC_EXCEPTION: 'INVALID_TOPIC_EXCEPTION',
  // A transactional producer fenced by a newer epoch (librdkafka raises it as a fatal local error).
  _FENCED: 'PRODUCER_FENCED',
};

/** The protocol name of a Kafka error carried by `error` itself (not its causes); null if none. */
export function kafkaErrorType(error: unknown): string | null {
  if (typeof error !== 'object' || error === null) return null;
  const type = (error as { type?: unknown }).type;
  if (typeof type !== 'string') return null;
  if (!type.startsWith('ERR_')) return type;
  const name = type.slice('ERR_'.length);
  return LIBRDKAFKA_RENAMES[name] ?? name;
}

/** The error and the errors it wraps (kafkajs: `originalError`, `cause`), outermost first. */
export function errorChain(error: unknown, limit = 8): unknown[] {
  const errors: unknown[] = [];
  let current: unknown = error;
  while (current && typeof current === 'object' && errors.length < limit && !errors.includes(current)) {
    errors.push(current);
    const e = current as { cause?: unknown; originalError?: unknown };
    current = e.originalError ?? e.cause;
  }
  return errors;
}

/** Whether `error` or an error it wraps has the Kafka error `type` (either client). */
export function hasKafkaErrorType(error: unknown, type: string): boolean {
  return errorChain(error).some((e) => kafkaErrorType(e) === type);
}

/**
 * librdkafka's transactional producer marks its errors: `fatal` (the producer is unusable and
 * must be replaced: fenced, or its idempotence state lost) and `abortable` (abort the transaction
 * and go on). kafkajs sets neither.
 */
export function isFatalProducerError(error: unknown): boolean {
  return errorChain(error).some((e) => (e as { fatal?: unknown }).fatal === true);
}
