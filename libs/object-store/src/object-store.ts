import type { Readable } from 'node:stream';

/** A stored object: where it is and what it holds. */
export interface StoredObject {
  /** `file:///…/<key>` or `s3://<bucket>/<prefix><key>`; what records carry and `get`/`open` take. */
  uri: string;
  /** Lowercase hex SHA-256 of the bytes, computed while writing. */
  sha256: string;
  size: number;
}

export interface PutOptions {
  contentType?: string;
  /** Refuse (and remove) the object once more than this many bytes arrived: ObjectStoreError TOO_LARGE. */
  maxBytes?: number;
}

/** Inclusive byte range, as in an HTTP Range header. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface ObjectInfo {
  uri: string;
  key: string;
  size: number;
  lastModified: Date;
}

/**
 * Claim-check storage (docs/object-store.md). Keys are `/`-separated segments of letters, digits,
 * `.`, `_`, `-` (no `.`/`..` segments); a URI outside this store's location is refused, so a
 * record cannot point a service at another file or bucket.
 */
export interface ObjectStore {
  /** The configured location (OBJECT_STORE_URL, normalised). */
  readonly location: string;
  /** Streams the body to `key`, hashing while writing; the object appears whole or not at all. */
  put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<StoredObject>;
  get(uri: string): Promise<Buffer>;
  open(uri: string, range?: ByteRange): Promise<Readable>;
  /** Size of the object, or null when it does not exist. */
  stat(uri: string): Promise<{ size: number } | null>;
  /** Removes the object; removing a missing object is not an error. */
  delete(uri: string): Promise<void>;
  exists(uri: string): Promise<boolean>;
  /** Objects under a key prefix (e.g. `studies/`), in no particular order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** The key of a URI of this store; throws INVALID_URI for anything else. */
  keyOf(uri: string): string;
  close(): Promise<void>;
}

export type ObjectStoreErrorKind = 'NOT_FOUND' | 'TOO_LARGE' | 'INVALID_KEY' | 'INVALID_URI' | 'UNAVAILABLE';

/** A classified object-store failure; UNAVAILABLE is transient (retry), the others are not. */
export class ObjectStoreError extends Error {
  override readonly name = 'ObjectStoreError';

  constructor(
    readonly kind: ObjectStoreErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** Checks a key (throws INVALID_KEY) and returns it; segments cannot climb out of the store. */
export function checkKey(key: string): string {
  const segments = key.split('/');
  const ok =
    key.length > 0 &&
    key.length <= 900 &&
    segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..' && s.length <= 255);
  if (!ok) throw new ObjectStoreError('INVALID_KEY', `invalid object key ${JSON.stringify(key.slice(0, 120))}`);
  return key;
}

/** A key prefix for `list`: '' or whole segments ending in '/'. */
export function checkPrefix(prefix: string): string {
  if (prefix === '') return prefix;
  if (!prefix.endsWith('/')) throw new ObjectStoreError('INVALID_KEY', `a prefix ends with '/' (got ${JSON.stringify(prefix)})`);
  checkKey(prefix.slice(0, -1));
  return prefix;
}
