import { ThoraxError } from '@thorax/contracts';
import { sqlState } from './sql-client';

/**
 * What a store failure means, decided here and only here (the consumer and the read API both ask):
 * - `rejected`: this row can never be stored (SQLSTATE class 22 data exception, e.g. 22P05 a
 *   \u0000 in a JSON string that jsonb refuses; 23 integrity constraint violation; 54 program
 *   limit exceeded): retrying cannot help;
 * - `unavailable`: the store is away or busy and will come back (class 08 connection exception,
 *   40 transaction rollback such as a deadlock, 53 insufficient resources, 57 operator
 *   intervention such as a server restarting; a socket error such as ECONNREFUSED);
 * - `unexpected`: anything else (a bug, a driver error without a SQLSTATE).
 */
export type StoreFailure = 'rejected' | 'unavailable' | 'unexpected';

const REJECTED_CLASSES = new Set(['22', '23', '54']);
const UNAVAILABLE_CLASSES = new Set(['08', '40', '53', '57']);

export function storeFailureOf(error: unknown): StoreFailure {
  const state = sqlState(error);
  if (state) {
    const stateClass = state.slice(0, 2);
    if (REJECTED_CLASSES.has(stateClass)) return 'rejected';
    if (UNAVAILABLE_CLASSES.has(stateClass)) return 'unavailable';
    return 'unexpected';
  }
  const errno = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof errno === 'string' && /^E[A-Z]+$/.test(errno) ? 'unavailable' : 'unexpected';
}

/**
 * A store failure for the consumer's failure policy: a record the database rejects is invalid
 * (dead-lettered at once); anything else (connection lost, server restarting, lock timeout, an
 * unexpected driver error) is retried in place, then handed back to Kafka for redelivery: a
 * valid record is never dead-lettered because the store is away.
 */
export function classifyStoreError(error: unknown): ThoraxError {
  if (error instanceof ThoraxError) return error;
  const state = sqlState(error);
  const message = error instanceof Error ? error.message : String(error);
  if (storeFailureOf(error) === 'rejected') {
    return new ThoraxError('INVALID_MESSAGE', `store rejected the event (SQLSTATE ${state ?? '?'}): ${message}`, {
      stage: 'results',
      cause: error,
    });
  }
  return new ThoraxError('INTERNAL_ERROR', `store unavailable${state ? ` (SQLSTATE ${state})` : ''}: ${message}`, {
    stage: 'results',
    redeliver: true,
    cause: error,
  });
}
