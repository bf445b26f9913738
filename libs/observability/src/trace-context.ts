import { HEADERS } from '@thorax/contracts';
import { randomBytes } from 'node:crypto';

/** The fields of a W3C `traceparent` header (version-traceid-parentid-flags). */
export interface TraceContext {
  version: string;
  traceId: string;
  parentId: string;
  flags: string;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_PARENT = '0'.repeat(16);

/**
 * Parses a W3C traceparent; null when it is absent or invalid (version ff, an all-zero trace or
 * parent id, version 00 with trailing fields, wrong lengths or upper-case hex).
 */
export function parseTraceparent(value: string | undefined): TraceContext | null {
  const match = TRACEPARENT.exec(value?.trim() ?? '');
  if (!match) return null;
  const [, version, traceId, parentId, flags, rest] = match as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || traceId === ZERO_TRACE || parentId === ZERO_PARENT) return null;
  if (version === '00' && rest !== undefined) return null;
  return { version, traceId, parentId, flags };
}

/** A new trace: random trace and parent ids, sampled flag set. */
export function newTraceparent(): string {
  return formatTraceparent({ version: '00', traceId: randomHex(16, ZERO_TRACE), parentId: randomHex(8, ZERO_PARENT), flags: '01' });
}

/** The same trace with a new parent id: what a stage forwards as its own span. */
export function childTraceparent(parent: string): string {
  const context = parseTraceparent(parent);
  if (!context) return newTraceparent();
  return formatTraceparent({ ...context, version: '00', parentId: randomHex(8, ZERO_PARENT) });
}

export function formatTraceparent(context: TraceContext): string {
  return `${context.version}-${context.traceId}-${context.parentId}-${context.flags}`;
}

/**
 * Headers of a record with a valid W3C `traceparent`: the same object when it already has one,
 * otherwise a copy with a new trace started (and any `tracestate` dropped, as the W3C spec asks
 * when the traceparent is missing or invalid). Ingest calls this on every record from a PACS, so
 * every record carries one trace id from ingest to results.
 */
export function ensureTraceparent(headers: Record<string, string>): Record<string, string> {
  if (parseTraceparent(headers[HEADERS.traceparent])) return headers;
  const { [HEADERS.tracestate]: _dropped, ...rest } = headers;
  return { ...rest, [HEADERS.traceparent]: newTraceparent() };
}

function randomHex(bytes: number, zero: string): string {
  for (;;) {
    const hex = randomBytes(bytes).toString('hex');
    if (hex !== zero) return hex;
  }
}
