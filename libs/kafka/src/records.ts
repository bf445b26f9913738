import { HEADERS, type StudyInfo, type StudyRef, studyInfoFromRef } from '@thorax/contracts';

/** A record as handlers see it: headers decoded to strings, key as a string. */
export interface IncomingRecord {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
  /** Broker or producer timestamp, ms since epoch. */
  timestamp: number;
}

export interface OutgoingRecord {
  topic: string;
  key: string;
  value: Buffer;
  headers?: Record<string, string>;
}

export interface PublishOptions {
  /**
   * Send these records in a request of their own, never coalesced with other calls: for a record
   * the broker may refuse (a dead-letter copy near the DLQ topic's size limit), whose refusal
   * would otherwise fail, and re-send, the other calls' records that shared its request.
   */
  alone?: boolean;
}

/** The broker port: services publish through this and are unit-testable without Kafka. */
export interface Publisher {
  /** Resolves only once every record is acknowledged by all in-sync replicas. */
  publish(records: OutgoingRecord[], options?: PublishOptions): Promise<void>;
}

export const PUBLISHER = Symbol('thorax.publisher');

/** Headers that follow a record from stage to stage (trace context and receipt time). */
export function forwardedHeaders(record: IncomingRecord, extra: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of [HEADERS.traceparent, HEADERS.tracestate, HEADERS.receivedAt]) {
    const value = record.headers[name];
    if (value) out[name] = value;
  }
  return { ...out, ...extra };
}

type RawHeaderValue = Buffer | string | (Buffer | string)[] | undefined;

export function decodeHeaders(raw: Record<string, RawHeaderValue> | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw ?? {})) {
    if (value === undefined) continue;
    const first = Array.isArray(value) ? value[0] : value;
    if (first === undefined) continue;
    headers[name.toLowerCase()] = Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
  }
  return headers;
}

/** The record's key, or a stable stand-in naming its position when it has none. */
export function recordId(record: IncomingRecord): string {
  return record.key || `unkeyed:${record.topic}:${record.partition}:${record.offset}`;
}

/**
 * What an error event says about a record whose value is a protobuf message carrying id, study
 * and receipt time; falls back to the record's key when the value cannot be decoded.
 */
export function describeDecoded(
  record: IncomingRecord,
  decode: (value: Buffer) => { id: string; study?: StudyRef | undefined; receivedAt?: Date | undefined },
): { id: string; study?: StudyInfo; receivedAt?: Date } {
  try {
    const message = decode(record.value ?? Buffer.alloc(0));
    return {
      id: message.id || recordId(record),
      study: studyInfoFromRef(message.study),
      ...(message.receivedAt ? { receivedAt: message.receivedAt } : {}),
    };
  } catch {
    return { id: recordId(record) };
  }
}
