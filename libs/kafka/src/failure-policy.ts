import { type ErrorCode, ThoraxError } from '@thorax/contracts';
import { kafkaErrorType } from './kafka-errors';

export type Decision =
  { kind: 'retry'; delayMs: number } | { kind: 'dead-letter'; code: ErrorCode; message: string } | { kind: 'rethrow' };

export interface RetryPolicy {
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 3, initialBackoffMs: 200, maxBackoffMs: 5000 };

/**
 * Kafka error types with which a broker refuses a produced record for good: sending the same
 * record again cannot succeed (too large for the topic's max.message.bytes or the broker's
 * request limit, malformed, a timestamp outside the topic's bounds, a topic name the broker
 * rejects). Everything else a broker says (leader moved, not enough replicas, timeouts,
 * connection loss) is an outage that ends. A missing write permission (TOPIC_AUTHORIZATION_FAILED)
 * is deliberately not here: it is the deployment's fault, not the record's, and dead-lettering
 * would turn every input into an error event until the ACL is fixed; the record is redelivered
 * instead (the partition waits, the log and readiness name the cause).
 */
export const REFUSED_RECORD_TYPES: ReadonlySet<string> = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
  'INVALID_TIMESTAMP',
  'INVALID_TOPIC_EXCEPTION',
  'POLICY_VIOLATION',
]);

/**
 * The Kafka error type when `error` (or an error it wraps, through `cause`) is a broker's
 * permanent refusal of a record (see REFUSED_RECORD_TYPES); null otherwise.
 */
export function refusedRecordType(error: unknown): string | null {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth += 1) {
    const type = kafkaErrorType(current);
    if (type !== null && REFUSED_RECORD_TYPES.has(type)) return type;
    current = (current as { cause?: unknown }).cause;
  }
  return null;
}

/**
 * Classifies a handler failure into an explicit outcome:
 * - a broker's permanent refusal of an output record (too large, invalid)
 *   dead-letters the input at once as PUBLISH_REJECTED: redelivering it would fail the same way
 *   forever and stall its partition;
 * - a permanent ThoraxError dead-letters at once (bad input never blocks a partition);
 * - a transient ThoraxError or an unexpected error is retried with exponential backoff, then
 *   dead-lettered (INTERNAL_ERROR for unexpected ones) so one poison record cannot stall;
 * - any other broker failure (the record could not be published or acknowledged) is rethrown:
 *   the offset stays unresolved and the Kafka client redelivers from the last commit;
 * - an unavailable dependency (ThoraxError with `redeliver`) is retried in place, then
 *   rethrown the same way — a store outage never sends valid records to the DLQ.
 */
export function decide(
  error: unknown,
  attempt: number,
  policy: RetryPolicy,
  isBrokerError: (e: unknown) => boolean,
): Decision {
  const refused = refusedRecordType(error);
  if (refused) {
    const detail = error instanceof Error ? error.message : String(error);
    return { kind: 'dead-letter', code: 'PUBLISH_REJECTED', message: `the broker refused an output record (${refused}): ${detail}` };
  }
  if (isBrokerError(error)) return { kind: 'rethrow' };
  if (error instanceof ThoraxError && !error.transient) {
    return { kind: 'dead-letter', code: error.code, message: error.message };
  }
  if (attempt < policy.maxAttempts) {
    const delayMs = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (attempt - 1));
    return { kind: 'retry', delayMs };
  }
  if (error instanceof ThoraxError && error.redeliver) return { kind: 'rethrow' };
  if (error instanceof ThoraxError) return { kind: 'dead-letter', code: error.code, message: error.message };
  const message = error instanceof Error ? error.message : String(error);
  return { kind: 'dead-letter', code: 'INTERNAL_ERROR', message: `failed after ${attempt} attempts: ${message}` };
}
