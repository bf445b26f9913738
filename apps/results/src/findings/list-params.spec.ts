import { ListFindingsRequest } from '@thorax/contracts';
import { ResultsApiError } from './api-error';
import { encodePageToken } from './cursor';
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
