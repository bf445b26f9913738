import { Inject, Injectable } from '@nestjs/common';
import { HEADERS, ThoraxError } from '@thorax/contracts';
import { parseDicomFile, sniffMediaType } from '@thorax/imaging';
import { PUBLISHER, type Publisher } from '@thorax/kafka';
import { type ObjectStore, ObjectStoreError, type StoredObject } from '@thorax/object-store';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { OBJECT_STORE } from './object-store.provider';

export type EdgeSource = 'http' | 'grpc' | 'dicomweb' | 'dimse';

export interface Submission {
  /** Record key; when absent: the SOP Instance UID of a DICOM, else a random UUID. */
  id?: string;
  /** Declared media type; sniffed when absent. */
  contentType?: string;
  /** The instance bytes; a stream is spilled to the object store once it passes the inline limit. */
  body: Buffer | Readable;
  /** PACS headers of the contract (thorax-study-uid, thorax-accession, thorax-priority, traceparent …). */
  headers?: Record<string, string>;
  source: EdgeSource;
}

export interface Submitted {
  id: string;
  sizeBytes: number;
  claimCheck: boolean;
}

/** Headers an edge caller may set on the studies record; the claim-check and source ones are the submitter's. */
const CALLER_HEADERS: readonly string[] = [
  HEADERS.studyUid,
  HEADERS.accession,
  HEADERS.patientId,
  HEADERS.priority,
  HEADERS.traceparent,
  HEADERS.tracestate,
];

/** Longest record key accepted from an edge (ids are logged, stored and used in URLs). */
const MAX_ID_LENGTH = 256;
const ID_PATTERN = /^[\x21-\x7e]+$/;

/**
 * Hands one instance from an edge (HTTP, gRPC, DICOMweb, DIMSE) to the normal pipeline: ONE record
 * on thorax.studies.v1 keyed by the image id, acknowledged by Kafka before `submit` resolves. Up to
 * INGEST_INLINE_MAX_BYTES the bytes are the record value; above it they are streamed to the object
 * store under `studies/` and the record has an empty value and the claim-check headers
 * (docs/object-store.md). Ingest's studies consumer then admits it like any PACS record.
 *
 * Failures are ThoraxErrors: PAYLOAD_TOO_LARGE above INGEST_OBJECT_MAX_BYTES, EMPTY_PAYLOAD,
 * MISSING_KEY for an unusable id, and transient INTERNAL_ERROR when the store or the broker could
 * not take it (the caller answers "try again": 503, DIMSE 0xA700).
 */
@Injectable()
export class InstanceSubmitter {
  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
    @Inject(OBJECT_STORE) private readonly store: ObjectStore,
  ) {}

  /**
   * The submission with its id settled (given, the SOP Instance UID, or a UUID) before anything is
   * published: a caller that must know the id first (predict registers its wait) calls this, then
   * `submit`. Reads the head of a stream; the body it returns still yields every byte.
   */
  async prepare(s: Submission): Promise<Submission & { id: string }> {
    const { head, rest } = Buffer.isBuffer(s.body) ? { head: s.body, rest: null } : await readHead(s.body, this.config.INGEST_INLINE_MAX_BYTES + 1);
    if (head.length === 0) throw new ThoraxError('EMPTY_PAYLOAD', 'the request has no bytes', { stage: 'ingest' });
    const id = s.id !== undefined ? checkId(s.id) : (sopInstanceUid(head) ?? randomUUID());
    return { ...s, id, body: rest === null ? head : Readable.from(chain(head, rest)) };
  }

  async submit(s: Submission): Promise<Submitted> {
    const inlineMax = this.config.INGEST_INLINE_MAX_BYTES;
    const { head, rest } = Buffer.isBuffer(s.body) ? { head: s.body, rest: null } : await readHead(s.body, inlineMax + 1);
    if (head.length === 0) throw new ThoraxError('EMPTY_PAYLOAD', 'the request has no bytes', { stage: 'ingest' });
    const id = s.id !== undefined ? checkId(s.id) : (sopInstanceUid(head) ?? randomUUID());
    const headers: Record<string, string> = { [HEADERS.source]: s.source, [HEADERS.receivedAt]: new Date().toISOString() };
    for (const name of CALLER_HEADERS) {
      const value = s.headers?.[name];
      if (value) headers[name] = value;
    }
    if (s.contentType) headers[HEADERS.contentType] = s.contentType;

    if (head.length <= inlineMax && rest === null) {
      await this.publish(id, head, headers);
      return { id, sizeBytes: head.length, claimCheck: false };
    }

    const body = rest === null ? head : Readable.from(chain(head, rest));
    const stored = await this.spill(body, s.contentType);
    try {
      await this.publish(id, Buffer.alloc(0), {
        ...headers,
        [HEADERS.objectUri]: stored.uri,
        [HEADERS.objectSha256]: stored.sha256,
        [HEADERS.objectSize]: String(stored.size),
      });
    } catch (error) {
      // Nothing refers to the object: remove it rather than leave it to the sweep.
      await this.store.delete(stored.uri).catch(() => undefined);
      throw error;
    }
    return { id, sizeBytes: stored.size, claimCheck: true };
  }

  private async spill(body: Buffer | Readable, contentType: string | undefined): Promise<StoredObject> {
    const max = this.config.INGEST_OBJECT_MAX_BYTES;
    if (Buffer.isBuffer(body) && body.length > max) {
      throw new ThoraxError('PAYLOAD_TOO_LARGE', `${body.length} bytes exceeds ${max} (INGEST_OBJECT_MAX_BYTES)`, { stage: 'ingest' });
    }
    const key = `studies/${new Date().toISOString().slice(0, 10)}/${randomUUID()}`;
    try {
      return await this.store.put(key, body, { maxBytes: max, ...(contentType ? { contentType } : {}) });
    } catch (error) {
      if (error instanceof ObjectStoreError && error.kind === 'TOO_LARGE') {
        throw new ThoraxError('PAYLOAD_TOO_LARGE', `the instance exceeds ${max} bytes (INGEST_OBJECT_MAX_BYTES)`, { stage: 'ingest' });
      }
      throw new ThoraxError('INTERNAL_ERROR', 'the object store could not take the instance', { stage: 'ingest', transient: true, cause: error });
    }
  }

  private async publish(id: string, value: Buffer, headers: Record<string, string>): Promise<void> {
    try {
      await this.publisher.publish([{ topic: this.config.TOPIC_STUDIES, key: id, value, headers }]);
    } catch (error) {
      if (error instanceof ThoraxError) throw error;
      throw new ThoraxError('INTERNAL_ERROR', 'the studies topic did not acknowledge the record', { stage: 'ingest', transient: true, cause: error });
    }
  }
}

function checkId(id: string): string {
  if (id.length === 0 || id.length > MAX_ID_LENGTH || !ID_PATTERN.test(id)) {
    throw new ThoraxError('MISSING_KEY', `the image id must be 1-${MAX_ID_LENGTH} printable ASCII characters without spaces`, { stage: 'ingest' });
  }
  return id;
}

/** The SOP Instance UID of a DICOM (from its header, which the head holds), or null. */
function sopInstanceUid(head: Buffer): string | null {
  if (sniffMediaType(head) !== 'application/dicom') return null;
  try {
    const { info } = parseDicomFile(head, { maxInflatedBytes: head.length * 4 }, { untilPixelData: true, stage: 'ingest' });
    return info.sopInstanceUid && ID_PATTERN.test(info.sopInstanceUid) ? info.sopInstanceUid : null;
  } catch {
    return null;
  }
}

/**
 * Reads up to `limit` bytes of a stream. `rest` is null when the stream ended within them;
 * otherwise it is an iterator over the remaining chunks (the stream is not consumed further).
 */
export async function readHead(stream: Readable, limit: number): Promise<{ head: Buffer; rest: AsyncIterator<Buffer> | null }> {
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let size = 0;
  while (size < limit) {
    const next = await iterator.next();
    if (next.done) return { head: Buffer.concat(chunks, size), rest: null };
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
    chunks.push(chunk);
    size += chunk.length;
  }
  return { head: Buffer.concat(chunks, size), rest: iterator };
}

async function* chain(head: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  yield head;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    yield Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
  }
}
