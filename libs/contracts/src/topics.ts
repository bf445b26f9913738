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
} as const;

/** Pipeline stages, as they appear in error events and DLQ headers. */
export const STAGES = ['ingest', 'preprocess', 'inference', 'results'] as const;
export type Stage = (typeof STAGES)[number];
