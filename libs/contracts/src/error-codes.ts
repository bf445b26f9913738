import type { Stage } from './topics';

/**
 * The closed set of error codes a findings event, a DLQ record or an API error can carry.
 * docs/error-codes.md documents each one; a test keeps the two in step.
 */
export const ERROR_CODES = {
  EMPTY_PAYLOAD: 'The record has no bytes.',
  MISSING_KEY: 'The record has no key, so no image id can be assigned.',
  PAYLOAD_TOO_LARGE: 'The file is larger than the configured byte limit.',
  UNSUPPORTED_MEDIA_TYPE: 'The bytes are not DICOM, PNG or JPEG (declared or sniffed).',
  CONTENT_TYPE_MISMATCH: 'The declared content-type contradicts the bytes.',
  CORRUPT_IMAGE: 'The image could not be decoded: truncated, damaged or not what it claims.',
  IMAGE_TOO_LARGE: 'The image has more pixels than the configured limit (decompression bomb guard).',
  IMAGE_TOO_SMALL: 'The image is smaller than the minimum size for a chest radiograph.',
  DICOM_NOT_SUPPORTED: 'DICOM input is switched off in this deployment.',
  UNSUPPORTED_TRANSFER_SYNTAX: 'The DICOM transfer syntax (pixel encoding) is not one Thorax decodes.',
  UNSUPPORTED_PIXEL_FORMAT: 'The pixel layout is valid but not one Thorax decodes (bits allocated, photometric interpretation, CMYK).',
  TOO_MANY_FRAMES: 'The DICOM declares more frames than the configured limit.',
  DECODE_TIMEOUT: 'Decoding the image took longer than the configured limit.',
  UNSUPPORTED_MODALITY: 'The DICOM modality is not a chest radiograph modality (CR/DX).',
  UNSUPPORTED_VIEW: 'The view is not frontal (PA/AP).',
  UNSUPPORTED_BODY_PART: 'The DICOM body part examined is not the chest.',
  INVALID_MESSAGE: 'An internal topic carried a record that does not match its schema.',
  MODEL_INPUT_MISMATCH: 'The preprocessed image does not match what the model expects.',
  INFERENCE_FAILED: 'The model failed on this image.',
  PUBLISH_REJECTED: 'The broker refused an output record for good (too large for the topic, invalid, not authorised).',
  OBJECT_REFERENCE_INVALID: 'The claim-check headers are incomplete or malformed, or name a location outside the object store.',
  OBJECT_NOT_FOUND: 'The object a claim-check record refers to does not exist (any more).',
  OBJECT_DIGEST_MISMATCH: 'The referenced object differs from the record: another size or SHA-256.',
  INTERNAL_ERROR: 'An unexpected failure that persisted after retries.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

/**
 * A classified failure. Permanent errors dead-letter the record at once; transient ones are
 * retried with backoff before they do.
 */
export class ThoraxError extends Error {
  override readonly name = 'ThoraxError';

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly options: { stage?: Stage; transient?: boolean; redeliver?: boolean; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
  }

  get transient(): boolean {
    return (this.options.transient ?? false) || this.redeliver;
  }

  /**
   * A dependency (store, broker) is unavailable: the record is fine and must never be
   * dead-lettered. After in-place retries the consumer gives it back to Kafka for redelivery.
   */
  get redeliver(): boolean {
    return this.options.redeliver ?? false;
  }
}
