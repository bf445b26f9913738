import { HEADERS, type Stage, ThoraxError } from '@thorax/contracts';
import { createHash } from 'node:crypto';
import { type ObjectStore, ObjectStoreError } from './object-store';

/** Key prefix of claim-checked inputs: removed once their result is stored, swept by age otherwise. */
export const CLAIM_CHECK_PREFIX = 'studies/';

/** A reference to an instance kept in the object store instead of the record value. */
export interface ClaimCheck {
  uri: string;
  sha256: string;
  size: number;
}

const SHA256 = /^[0-9a-f]{64}$/;
const SIZE = /^[1-9][0-9]{0,15}$/;

/**
 * The claim-check of a studies record: null when it has no `thorax-object-uri` header. Throws
 * OBJECT_REFERENCE_INVALID for incomplete or malformed headers and for a URI that is not under
 * `studies/` of this store (a record must not make a service read, or retention delete, anything else).
 */
export function parseClaimCheck(headers: Record<string, string>, store: ObjectStore, stage: Stage): ClaimCheck | null {
  const uri = headers[HEADERS.objectUri];
  if (uri === undefined) return null;
  const sha256 = (headers[HEADERS.objectSha256] ?? '').toLowerCase();
  const size = headers[HEADERS.objectSize] ?? '';
  if (!SHA256.test(sha256)) throw invalid(`${HEADERS.objectSha256} must be 64 hex digits`, stage);
  if (!SIZE.test(size)) throw invalid(`${HEADERS.objectSize} must be a positive byte count`, stage);
  return { uri: checkClaimCheckUri(uri, store, stage), sha256, size: Number(size) };
}

/** The URI if it names an object under `studies/` of this store; else OBJECT_REFERENCE_INVALID. */
export function checkClaimCheckUri(uri: string, store: ObjectStore, stage: Stage): string {
  let key: string;
  try {
    key = store.keyOf(uri);
  } catch {
    throw invalid(`${HEADERS.objectUri} is not an object of this store (${store.location})`, stage);
  }
  if (!key.startsWith(CLAIM_CHECK_PREFIX)) throw invalid(`${HEADERS.objectUri} is not under ${CLAIM_CHECK_PREFIX}`, stage);
  return uri;
}

/** True when `uri` names a claim-checked input of this store (what retention may delete). */
export function isClaimCheckUri(uri: string, store: ObjectStore): boolean {
  try {
    return store.keyOf(uri).startsWith(CLAIM_CHECK_PREFIX);
  } catch {
    return false;
  }
}

/**
 * Reads a claim-checked instance whole and verifies it against its reference: OBJECT_NOT_FOUND,
 * OBJECT_DIGEST_MISMATCH (size or SHA-256); an unreachable store is a ThoraxError that redelivers.
 */
export async function fetchVerified(store: ObjectStore, ref: ClaimCheck, stage: Stage): Promise<Buffer> {
  let data: Buffer;
  try {
    data = await store.get(ref.uri);
  } catch (error) {
    throw objectStoreFailure(error, ref.uri, stage);
  }
  if (data.length !== ref.size) {
    throw new ThoraxError('OBJECT_DIGEST_MISMATCH', `the object has ${data.length} bytes, the record says ${ref.size}`, { stage });
  }
  const digest = createHash('sha256').update(data).digest('hex');
  if (digest !== ref.sha256) {
    throw new ThoraxError('OBJECT_DIGEST_MISMATCH', 'the object SHA-256 differs from the record', { stage });
  }
  return data;
}

/** An object-store failure as the pipeline's error: NOT_FOUND is permanent, UNAVAILABLE redelivers. */
export function objectStoreFailure(error: unknown, uri: string, stage: Stage): ThoraxError {
  if (error instanceof ThoraxError) return error;
  if (error instanceof ObjectStoreError) {
    switch (error.kind) {
      case 'NOT_FOUND':
        return new ThoraxError('OBJECT_NOT_FOUND', 'the referenced object does not exist', { stage, cause: error });
      case 'INVALID_URI':
      case 'INVALID_KEY':
        return invalid(`${HEADERS.objectUri} is not an object of this store`, stage);
      case 'TOO_LARGE':
        return new ThoraxError('PAYLOAD_TOO_LARGE', error.message, { stage, cause: error });
      case 'UNAVAILABLE':
        break;
    }
  }
  return new ThoraxError('INTERNAL_ERROR', `the object store is not available (${uri.split('/').slice(0, 3).join('/')}…)`, {
    stage,
    redeliver: true,
    cause: error,
  });
}

function invalid(message: string, stage: Stage): ThoraxError {
  return new ThoraxError('OBJECT_REFERENCE_INVALID', message, { stage });
}
