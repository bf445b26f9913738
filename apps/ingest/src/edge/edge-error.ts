import { status as GrpcStatus } from '@grpc/grpc-js';
import { type ErrorCode, isErrorCode, ThoraxError } from '@thorax/contracts';

/**
 * Error codes of ingest's HTTP and gRPC edges (docs/error-codes.md, "HTTP and gRPC edges"). A
 * refused upload carries the pipeline's own code (ErrorCode); the edge adds its own for what is not
 * an image's fault.
 */
export type EdgeErrorCode =
  | ErrorCode
  | 'INVALID_ARGUMENT'
  | 'UNAVAILABLE'
  | 'TOO_MANY_REQUESTS'
  | 'PREDICT_TIMEOUT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED';

export class EdgeError extends Error {
  override readonly name = 'EdgeError';

  constructor(
    readonly code: EdgeErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The image's own fault, not processable as sent: 422 (or the more specific 413/415 below). */
const UNPROCESSABLE: readonly ErrorCode[] = [
  'EMPTY_PAYLOAD',
  'MISSING_KEY',
  'CONTENT_TYPE_MISMATCH',
  'CORRUPT_IMAGE',
  'IMAGE_TOO_SMALL',
  'UNSUPPORTED_TRANSFER_SYNTAX',
  'UNSUPPORTED_PIXEL_FORMAT',
  'TOO_MANY_FRAMES',
  'DECODE_TIMEOUT',
  'UNSUPPORTED_MODALITY',
  'UNSUPPORTED_VIEW',
  'UNSUPPORTED_BODY_PART',
  'OBJECT_REFERENCE_INVALID',
  'OBJECT_NOT_FOUND',
  'OBJECT_DIGEST_MISMATCH',
];

/** HTTP status of an edge error or of an error findings event's code. */
export function httpStatusOf(code: EdgeErrorCode): number {
  switch (code) {
    case 'PAYLOAD_TOO_LARGE':
    case 'IMAGE_TOO_LARGE':
      return 413;
    case 'UNSUPPORTED_MEDIA_TYPE':
    case 'DICOM_NOT_SUPPORTED':
      return 415;
    case 'INVALID_ARGUMENT':
      return 400;
    case 'UNAUTHENTICATED':
      return 401;
    case 'PERMISSION_DENIED':
      return 403;
    case 'TOO_MANY_REQUESTS':
      return 429;
    case 'UNAVAILABLE':
      return 503;
    case 'PREDICT_TIMEOUT':
      return 504;
    default:
      return (UNPROCESSABLE as readonly string[]).includes(code) ? 422 : 500;
  }
}

/** gRPC status of an edge error or of an error findings event's code. */
export function grpcStatusOf(code: EdgeErrorCode): GrpcStatus {
  switch (httpStatusOf(code)) {
    case 400:
    case 413:
    case 415:
    case 422:
      return GrpcStatus.INVALID_ARGUMENT;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 429:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case 503:
      return GrpcStatus.UNAVAILABLE;
    case 504:
      return GrpcStatus.DEADLINE_EXCEEDED;
    default:
      return GrpcStatus.INTERNAL;
  }
}

/** Any failure of an edge call as an EdgeError; unexpected ones become INTERNAL_ERROR without details. */
export function toEdgeError(error: unknown): EdgeError {
  if (error instanceof EdgeError) return error;
  if (error instanceof ThoraxError) {
    if (error.transient) return new EdgeError('UNAVAILABLE', 'the pipeline cannot take the image now; try again', { cause: error });
    return new EdgeError(error.code, error.message, { cause: error });
  }
  return new EdgeError('INTERNAL_ERROR', 'internal error', { cause: error });
}

export function isEdgeCode(value: string): value is EdgeErrorCode {
  return isErrorCode(value) || ['INVALID_ARGUMENT', 'UNAVAILABLE', 'TOO_MANY_REQUESTS', 'PREDICT_TIMEOUT'].includes(value);
}
