import { HEADERS } from '@thorax/contracts';
import type { RecordPosition } from './consumer-port';

export interface OutgoingRecord {
  topic: string;
  key: string;
  value: Buffer;
  headers?: Record<string, string>;
  /**
   * The message `value` encodes, when the producer built one (encodedRecord): a stage in the same
   * process (co-located stages, LocalTopics) takes it as it is instead of decoding `value`.
   */
  message?: unknown;
}

/**
 * A record whose value is encoded from `message` only when something reads it, once: a record
 * handed to a stage in the same process (LocalTopics) is never encoded, and its consumer gets
 * `message` itself, so an image's bytes are not copied through a protobuf writer and back.
 */
export function encodedRecord<T>(
  fields: { topic: string; key: string; headers?: Record<string, string> },
  message: T,
  encode: (message: T) => Uint8Array,
): OutgoingRecord {
  let value: Buffer | null = null;
  return {
    ...fields,
    message,
    get value(): Buffer {
      return (value ??= asBuffer(encode(message)));
    },
  };
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

/**
 * A Buffer over an encoder's output without copying it (`Buffer.from(uint8Array)` copies: for a
 * 250 KB image record that copy showed in the ingest profile, docs/inference.md "Kafka client").
 */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Headers that follow a record from stage to stage (trace context and receipt time), from the
 * headers of the record consumed (docs/contract.md "Headers").
 */
export function forwardedHeaders(headers: Record<string, string>, extra: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARDED) {
    const value = headers[name];
    if (value) out[name] = value;
  }
  return { ...out, ...extra };
}

const FORWARDED = [HEADERS.traceparent, HEADERS.tracestate, HEADERS.receivedAt, HEADERS.claimCheck];

type RawHeaderValue = Buffer | string | (Buffer | string)[] | undefined;

export function decodeHeaders(raw: Record<string, RawHeaderValue> | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  if (!raw) return headers;
  for (const name in raw) {
    const value = raw[name];
    if (value === undefined) continue;
    const first = Array.isArray(value) ? value[0] : value;
    if (first === undefined) continue;
    headers[name.toLowerCase()] = Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
  }
  return headers;
}

/** The record's key, or a stable stand-in naming its position when it has none. */
export function recordId(position: RecordPosition): string {
  return position.key || `unkeyed:${position.topic}:${position.partition}:${position.offset}`;
}
