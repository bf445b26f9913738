import { CHESTXRAY14_LABELS, type ListFindingsRequest } from '@thorax/contracts';
import type { FindingsListQuery } from '../store/results-store.port';
import { ResultsApiError } from '../api/api-error';
import { decodePageToken } from '../api/cursor';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

/** List parameters as both edges receive them; empty strings mean "not given". */
export interface ListParams {
  studyUid?: string | undefined;
  accession?: string | undefined;
  status?: string | undefined;
  positiveLabel?: string | undefined;
  limit?: number | undefined;
  pageToken?: string | undefined;
  /** Completed at or after (inclusive). */
  from?: Date | undefined;
  /** Completed before (exclusive). */
  to?: Date | undefined;
}

const LABELS: ReadonlySet<string> = new Set(CHESTXRAY14_LABELS);

/** Validates list parameters into a store query. Page sizes above the maximum are clamped. */
export function toListQuery(params: ListParams): FindingsListQuery {
  const query: FindingsListQuery = { limit: DEFAULT_PAGE_SIZE };
  if (params.studyUid) query.studyUid = params.studyUid;
  if (params.accession) query.accession = params.accession;
  if (params.status) {
    if (params.status !== 'ok' && params.status !== 'error') {
      throw new ResultsApiError('INVALID_ARGUMENT', `status must be "ok" or "error", not ${JSON.stringify(params.status)}`);
    }
    query.status = params.status;
  }
  if (params.positiveLabel) {
    if (!LABELS.has(params.positiveLabel)) {
      throw new ResultsApiError('INVALID_ARGUMENT', `positiveLabel must be a ChestX-ray14 label as NIH spells it (e.g. Cardiomegaly)`);
    }
    query.positiveLabel = params.positiveLabel;
  }
  if (params.limit !== undefined && params.limit !== 0) {
    if (!Number.isInteger(params.limit) || params.limit < 0) {
      throw new ResultsApiError('INVALID_ARGUMENT', 'limit must be a positive integer');
    }
    query.limit = Math.min(params.limit, MAX_PAGE_SIZE);
  }
  if (params.pageToken) query.before = decodePageToken(params.pageToken);
  for (const [name, value] of [['from', params.from], ['to', params.to]] as const) {
    if (value !== undefined && Number.isNaN(value.getTime())) throw new ResultsApiError('INVALID_ARGUMENT', `${name} is not a valid time`);
  }
  if (params.from) query.from = params.from;
  if (params.to) query.to = params.to;
  if (params.from && params.to && params.from.getTime() >= params.to.getTime()) {
    throw new ResultsApiError('INVALID_ARGUMENT', 'from must be earlier than to');
  }
  return query;
}

/** An RFC 3339 date-time with a time zone (2026-11-30T10:00:00Z, …+01:00); the zone is not optional. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;

export function parseTime(name: string, value: string | undefined): Date | undefined {
  if (value === undefined || value === '') return undefined;
  const time = RFC3339.test(value) ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(time.getTime())) {
    throw new ResultsApiError('INVALID_ARGUMENT', `${name} must be an RFC 3339 date-time with a time zone, e.g. 2026-11-30T10:00:00Z`);
  }
  return time;
}

/** GET /v1/findings?studyUid=&accession=&status=&positiveLabel=&from=&to=&limit=&cursor= */
export function listParamsFromHttp(query: Record<string, unknown>): ListParams {
  const text = (name: string): string | undefined => {
    const value = query[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw new ResultsApiError('INVALID_ARGUMENT', `${name} must be given once`);
    return value;
  };
  const limit = text('limit');
  if (limit !== undefined && limit !== '' && !/^\d+$/.test(limit)) {
    throw new ResultsApiError('INVALID_ARGUMENT', 'limit must be a positive integer');
  }
  return {
    studyUid: text('studyUid'),
    accession: text('accession'),
    status: text('status'),
    positiveLabel: text('positiveLabel'),
    limit: limit ? Number(limit) : undefined,
    pageToken: text('cursor'),
    from: parseTime('from', text('from')),
    to: parseTime('to', text('to')),
  };
}

export function listParamsFromGrpc(request: ListFindingsRequest): ListParams {
  return {
    studyUid: request.studyUid,
    accession: request.accession,
    status: request.status,
    positiveLabel: request.positiveLabel,
    limit: request.pageSize,
    pageToken: request.pageToken,
    from: request.from,
    to: request.to,
  };
}
