import { ApiAuthException } from '@thorax/observability';
import { sqlState } from '../store/sql-client';

/**
 * Error codes of the results read API (REST and gRPC). The edges map them to statuses: HTTP in
 * findings.controller.ts, gRPC in results.grpc-controller.ts.
 */
export const API_ERROR_CODES = ['NOT_FOUND', 'INVALID_ARGUMENT', 'UNAUTHENTICATED', 'PERMISSION_DENIED', 'UNAVAILABLE', 'INTERNAL'] as const;
export type ApiErrorCode = (typeof API_ERROR_CODES)[number];

export class ResultsApiError extends Error {
  override readonly name = 'ResultsApiError';

  constructor(
    readonly code: ApiErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** SQLSTATE classes of a server that is away: connection exception, resources, operator intervention. */
const UNAVAILABLE_CLASSES = new Set(['08', '53', '57']);

/** Any failure as an API error; unexpected ones become INTERNAL without leaking details. */
export function toApiError(error: unknown): ResultsApiError {
  if (error instanceof ResultsApiError) return error;
  if (error instanceof ApiAuthException) {
    const { code } = (error.getResponse() as { error: { code: 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'UNAVAILABLE' } }).error;
    return new ResultsApiError(code, error.failure.message, { cause: error });
  }
  const state = sqlState(error);
  const errno = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  if ((state && UNAVAILABLE_CLASSES.has(state.slice(0, 2))) || (typeof errno === 'string' && /^E[A-Z]+$/.test(errno))) {
    return new ResultsApiError('UNAVAILABLE', 'the results store is not available', { cause: error });
  }
  return new ResultsApiError('INTERNAL', 'internal error', { cause: error });
}
