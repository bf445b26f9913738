import { ListFindingsRequest } from '@thorax/contracts';
import { ResultsApiError } from '../api/api-error';
import { encodePageToken } from '../api/cursor';
import { DEFAULT_PAGE_SIZE, listParamsFromGrpc, listParamsFromHttp, MAX_PAGE_SIZE, toListQuery } from './list-params';

function code(work: () => unknown): string | undefined {
  try {
    work();
    return undefined;
  } catch (error) {
    return error instanceof ResultsApiError ? error.code : 'other';
  }
}

describe('toListQuery', () => {
  it('defaults the page size and ignores empty filters (proto3 defaults)', () => {
    expect(toListQuery({})).toEqual({ limit: DEFAULT_PAGE_SIZE });
    expect(toListQuery(listParamsFromGrpc(ListFindingsRequest.create({})))).toEqual({ limit: DEFAULT_PAGE_SIZE });
    expect(toListQuery({ studyUid: '', accession: '', status: '', positiveLabel: '', pageToken: '' })).toEqual({
      limit: DEFAULT_PAGE_SIZE,
    });
  });

  it('passes filters, clamps the page size and decodes the cursor', () => {
    expect(
      toListQuery({
        studyUid: '1.2.3',
        accession: 'ACC-1',
        status: 'ok',
        positiveLabel: 'Pleural_Thickening',
        limit: 10_000,
        pageToken: encodePageToken(99n),
      }),
    ).toEqual({
      studyUid: '1.2.3',
      accession: 'ACC-1',
      status: 'ok',
      positiveLabel: 'Pleural_Thickening',
      limit: MAX_PAGE_SIZE,
      before: 99n,
    });
  });

  it('rejects unknown statuses, labels and bad sizes', () => {
    expect(code(() => toListQuery({ status: 'failed' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => toListQuery({ positiveLabel: 'cardiomegaly' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => toListQuery({ limit: 2.5 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => toListQuery({ pageToken: 'garbage' }))).toBe('INVALID_ARGUMENT');
  });
});

describe('listParamsFromHttp', () => {
  it('reads the query string', () => {
    expect(listParamsFromHttp({ studyUid: '1.2', limit: '20', cursor: 'abc', positiveLabel: 'Mass' })).toEqual({
      studyUid: '1.2',
      accession: undefined,
      status: undefined,
      positiveLabel: 'Mass',
      limit: 20,
      pageToken: 'abc',
    });
  });

  it('rejects repeated parameters and non-numeric limits', () => {
    expect(code(() => listParamsFromHttp({ status: ['ok', 'error'] }))).toBe('INVALID_ARGUMENT');
    expect(code(() => listParamsFromHttp({ limit: 'ten' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => listParamsFromHttp({ limit: '-1' }))).toBe('INVALID_ARGUMENT');
  });
});

describe('time range', () => {
  it('parses RFC 3339 times with a zone over HTTP and passes gRPC timestamps through', () => {
    const http = toListQuery(listParamsFromHttp({ from: '2026-11-30T10:00:00+01:00', to: '2026-11-30T10:00:00.5Z' }));
    expect(http.from?.toISOString()).toBe('2026-11-30T09:00:00.000Z');
    expect(http.to?.toISOString()).toBe('2026-11-30T10:00:00.500Z');
    const grpc = toListQuery(listParamsFromGrpc(ListFindingsRequest.create({ from: new Date('2026-01-01T00:00:00Z') })));
    expect(grpc).toEqual({ limit: DEFAULT_PAGE_SIZE, from: new Date('2026-01-01T00:00:00Z') });
  });

  it('refuses times without a zone, garbage and empty ranges', () => {
    for (const query of [{ from: '2026-11-30T10:00:00' }, { to: 'yesterday' }, { from: '2026-11-30' }, { from: ['2026-11-30T10:00:00Z', 'x'] }]) {
      expect(code(() => toListQuery(listParamsFromHttp(query)))).toBe('INVALID_ARGUMENT');
    }
    const same = '2026-11-30T10:00:00Z';
    expect(code(() => toListQuery(listParamsFromHttp({ from: same, to: same })))).toBe('INVALID_ARGUMENT');
    expect(code(() => toListQuery({ from: new Date(Number.NaN) }))).toBe('INVALID_ARGUMENT');
  });
});
