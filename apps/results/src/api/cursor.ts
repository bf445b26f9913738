import { ResultsApiError } from './api-error';

/**
 * Cursors are the store's sequence numbers. List page tokens are opaque (versioned, base64url)
 * so their content can change; a watch cursor is the plain decimal seq, which a client stores
 * to resume a stream (`0` replays everything).
 */
const PAGE_TOKEN_VERSION = 'p1';

export function encodePageToken(seq: bigint): string {
  return Buffer.from(`${PAGE_TOKEN_VERSION}:${seq.toString()}`, 'utf8').toString('base64url');
}

export function decodePageToken(token: string): bigint {
  const decoded = /^[A-Za-z0-9_-]{1,64}$/.test(token) ? Buffer.from(token, 'base64url').toString('utf8') : '';
  const digits = /^p1:(\d{1,19})$/.exec(decoded)?.[1];
  if (digits === undefined) throw new ResultsApiError('INVALID_ARGUMENT', 'page token is not one this service issued');
  return BigInt(digits);
}

export function encodeWatchCursor(seq: bigint): string {
  return seq.toString();
}

/** null: no cursor given, start from now. */
export function decodeWatchCursor(cursor: string): bigint | null {
  if (cursor === '') return null;
  if (!/^\d{1,19}$/.test(cursor)) throw new ResultsApiError('INVALID_ARGUMENT', 'cursor must be a cursor from a previous response');
  return BigInt(cursor);
}
