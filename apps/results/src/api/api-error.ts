import { ApiAuthException } from '@thorax/observability';
import { storeFailureOf } from '../store/store-errors';

/**
 * Error codes of the results read API (REST, gRPC, FHIR). The edges map them to statuses: HTTP in
 * api-error.filter.ts, gRPC in grpc/results.grpc-controller.ts, FHIR in fhir/fhir-error.ts.
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

/** Any failure as an API error; unexpected ones become INTERNAL without leaking details. */
export function toApiError(error: unknown): ResultsApiError {
  if (error instanceof ResultsApiError) return error;
  if (error instanceof ApiAuthException) {
    const { code } = (error.getResponse() as { error: { code: 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'UNAVAILABLE' } }).error;
    return new ResultsApiError(code, error.failure.message, { cause: error });
  }
  if (storeFailureOf(error) === 'unavailable') {
    return new ResultsApiError('UNAVAILABLE', 'the results store is not available', { cause: error });
  }
  return new ResultsApiError('INTERNAL', 'internal error', { cause: error });
}
