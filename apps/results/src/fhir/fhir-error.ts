import { HttpStatus } from '@nestjs/common';
import { toApiError } from '../api/api-error';

/** OperationOutcome.issue.code values this server uses (FHIR R4 IssueType). */
export type IssueType = 'invalid' | 'not-found' | 'not-supported' | 'exception' | 'transient' | 'processing' | 'login' | 'forbidden';

/** A FHIR failure: its HTTP status and the OperationOutcome issue that explains it. */
export class FhirError extends Error {
  override readonly name = 'FhirError';

  constructor(
    readonly status: number,
    readonly issue: IssueType,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Any failure as a FhirError: the results API's codes map onto HTTP statuses and issue types. */
export function toFhirError(error: unknown): FhirError {
  if (error instanceof FhirError) return error;
  const api = toApiError(error);
  switch (api.code) {
    case 'NOT_FOUND':
      return new FhirError(HttpStatus.NOT_FOUND, 'not-found', api.message, { cause: error });
    case 'INVALID_ARGUMENT':
      return new FhirError(HttpStatus.BAD_REQUEST, 'invalid', api.message, { cause: error });
    case 'UNAUTHENTICATED':
      return new FhirError(HttpStatus.UNAUTHORIZED, 'login', api.message, { cause: error });
    case 'PERMISSION_DENIED':
      return new FhirError(HttpStatus.FORBIDDEN, 'forbidden', api.message, { cause: error });
    case 'UNAVAILABLE':
      return new FhirError(HttpStatus.SERVICE_UNAVAILABLE, 'transient', api.message, { cause: error });
    case 'INTERNAL':
      return new FhirError(HttpStatus.INTERNAL_SERVER_ERROR, 'exception', api.message, { cause: error });
  }
}

export function operationOutcome(error: FhirError): Record<string, unknown> {
  const text = error.message.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return {
    resourceType: 'OperationOutcome',
    text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml"><p>${text}</p></div>` },
    issue: [{ severity: error.status >= 500 ? 'fatal' : 'error', code: error.issue, diagnostics: error.message }],
  };
}
