import { type ErrorCode, ThoraxError } from '@thorax/contracts';

export type Decision =
  { kind: 'retry'; delayMs: number } | { kind: 'dead-letter'; code: ErrorCode; message: string } | { kind: 'rethrow' };

export interface RetryPolicy {
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 3, initialBackoffMs: 200, maxBackoffMs: 5000 };

/**
 * Classifies a handler failure into an explicit outcome:
 * - a permanent ThoraxError dead-letters at once (bad input never blocks a partition);
 * - a transient ThoraxError or an unexpected error is retried with exponential backoff, then
 *   dead-lettered (INTERNAL_ERROR for unexpected ones) so one poison record cannot stall;
 * - a broker failure (the record could not be published or acknowledged) is rethrown: the
 *   offset stays unresolved and the Kafka client redelivers from the last commit;
 * - an unavailable dependency (ThoraxError with `redeliver`) is retried in place, then
 *   rethrown the same way — a store outage never sends valid records to the DLQ.
 */
export function decide(
  error: unknown,
  attempt: number,
  policy: RetryPolicy,
  isBrokerError: (e: unknown) => boolean,
): Decision {
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
