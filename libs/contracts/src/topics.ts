/** The dead-letter topic of a source topic. */
export function dlqTopic(topic: string): string {
  return `${topic}.dlq`;
}

/** Kafka header names Thorax reads or writes. */
export const HEADERS = {
  contentType: 'content-type',
  studyUid: 'thorax-study-uid',
  accession: 'thorax-accession',
  patientId: 'thorax-patient-id',
  priority: 'thorax-priority',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
  /** ISO-8601 time ingest first saw the record; carried to results for end-to-end latency. */
  receivedAt: 'thorax-received-at',
  errorCode: 'thorax-error-code',
  errorMessage: 'thorax-error-message',
  failedStage: 'thorax-failed-stage',
  /** On a DLQ record without its value: the original value's length in bytes (the DLQ topic refused it). */
  valueOmitted: 'thorax-value-omitted',
  /** Claim-check: the studies record's value is empty and the instance is this object (docs/object-store.md). */
  objectUri: 'thorax-object-uri',
  /** Lowercase hex SHA-256 of the referenced object. */
  objectSha256: 'thorax-object-sha256',
  /** Size of the referenced object in bytes. */
  objectSize: 'thorax-object-size',
  /**
   * On thorax.images.v1 and what follows it (tensors, findings): the claim-checked input of the
   * image, for results to remove once its row is stored. Set by ingest only, never taken from a producer.
   */
  claimCheck: 'thorax-claim-check',
  /** The edge a record came through: http, grpc, dicomweb or dimse (absent: a Kafka producer). */
  source: 'thorax-source',
} as const;

/** Pipeline stages, as they appear in error events and DLQ headers. */
export const STAGES = ['ingest', 'preprocess', 'inference', 'results'] as const;
export type Stage = (typeof STAGES)[number];
