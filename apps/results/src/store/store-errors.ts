import { ThoraxError } from '@thorax/contracts';
import { sqlState } from './sql-client';

/**
 * SQLSTATE classes that say "this row can never be stored" (e.g. 22P05: a \u0000 in a JSON
 * string, valid JSON that PostgreSQL's jsonb refuses): retrying cannot help.
 * 22 data exception, 23 integrity constraint violation, 54 program limit exceeded.
 */
const PERMANENT_CLASSES = new Set(['22', '23', '54']);

/**
 * Classifies a store failure for the consumer's failure policy: a record the database rejects
 * is invalid (dead-lettered at once); anything else (connection lost, server restarting, lock
 * timeout) means the store is unavailable: retried in place, then handed back to Kafka for
 * redelivery — never dead-lettered.
 */
export function classifyStoreError(error: unknown): ThoraxError {
  if (error instanceof ThoraxError) return error;
  const state = sqlState(error);
  const message = error instanceof Error ? error.message : String(error);
  if (state && PERMANENT_CLASSES.has(state.slice(0, 2))) {
    return new ThoraxError('INVALID_MESSAGE', `store rejected the event (SQLSTATE ${state}): ${message}`, {
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
