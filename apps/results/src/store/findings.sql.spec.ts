import { errorEvent, okEvent } from '../testing/findings-events';
import { buildAfterQuery, buildGetQuery, buildListQuery, buildStoreBatchQuery, NO_MODEL_VERSION, storeBatchJson, storeRow } from './findings.sql';

const squash = (sql: string): string => sql.replace(/\s+/g, ' ').trim();

describe('buildListQuery', () => {
  it('without filters: newest first, one row more than the page', () => {
    const q = buildListQuery({ limit: 50 });
    expect(squash(q.text)).toBe('SELECT seq::text AS seq, event, stored_at FROM findings_results ORDER BY seq DESC LIMIT $1::int');
    expect(q.values).toEqual([51]);
  });

  it('numbers parameters in filter order and never inlines values', () => {
    const q = buildListQuery({
      studyUid: "1.2'; DROP TABLE findings_results; --",
      accession: 'ACC-1',
      status: 'error',
      positiveLabel: 'Mass',
      before: 9_007_199_254_740_993n,
      limit: 10,
    });
    expect(squash(q.text)).toBe(
      'SELECT seq::text AS seq, event, stored_at FROM findings_results WHERE study_uid = $1 AND accession = $2 ' +
        'AND status = $3 AND positives @> ARRAY[$4::text] AND seq < $5::text::bigint ORDER BY seq DESC LIMIT $6::int',
    );
    expect(q.values).toEqual(["1.2'; DROP TABLE findings_results; --", 'ACC-1', 'error', 'Mass', '9007199254740993', 11]);
  });

  it('a single filter starts at $1', () => {
    const q = buildListQuery({ positiveLabel: 'Edema', limit: 5 });
    expect(squash(q.text)).toContain('WHERE positives @> ARRAY[$1::text] ORDER BY seq DESC LIMIT $2::int');
    expect(q.values).toEqual(['Edema', 6]);
  });
});

describe('storeRow and buildStoreBatchQuery', () => {
  it('keys an ok event by id and model version and indexes its columns', () => {
    const event = okEvent('img-1', { positives: ['Cardiomegaly', 'Edema'] });
    expect(storeRow(event)).toEqual({
      image_id: 'img-1',
      model_version: '2026.11.30-1',
      status: 'ok',
      model_name: 'chexnet-densenet121',
      study_uid: '1.2.3',
      accession: 'ACC-1',
      error_code: null,
      error_stage: null,
      positives: ['Cardiomegaly', 'Edema'],
      received_at: '2026-11-30T10:00:00.000Z',
      completed_at: '2026-11-30T10:00:00.412Z',
      event,
    });
  });

  it('keys an error event without a model by the sentinel version', () => {
    expect(storeRow(errorEvent('img-2', { study: {} }))).toMatchObject({
      image_id: 'img-2',
      model_version: NO_MODEL_VERSION,
      status: 'error',
      model_name: null,
      study_uid: null,
      accession: null,
      error_code: 'CORRUPT_IMAGE',
      error_stage: 'preprocess',
      positives: [],
    });
  });

  it('upserts every row of a batch in one statement with one parameter, never inlining values', () => {
    const rows = [storeRow(okEvent("img-'1")), storeRow(errorEvent('img-2'))];
    const q = buildStoreBatchQuery(rows);
    expect(q.text).toContain('ON CONFLICT (image_id, model_version) DO UPDATE');
    expect(q.text).toContain("WHERE r.status = 'error' AND r.event IS DISTINCT FROM EXCLUDED.event");
    expect(squash(q.text)).toContain('FROM ROWS FROM (jsonb_to_recordset($1::text::jsonb)');
    expect(q.text).not.toContain("img-'1");
    expect(q.values).toHaveLength(1);
    expect(JSON.parse(q.values[0] as string)).toEqual(rows);
  });

  it('hands back what it wrote as one row: a JSON array of keys, seqs and inserted flags', () => {
    const q = buildStoreBatchQuery([storeRow(okEvent('img-1'))]);
    expect(squash(q.text)).toContain('RETURNING image_id, model_version, seq, (xmax = 0) AS inserted )');
    expect(squash(q.text)).toContain("SELECT coalesce(json_agg(json_build_array(image_id, model_version, seq::text, inserted)), '[]')::text AS written, now() AS stored_at FROM written");
  });

  it('puts an event in as it was received when its JSON is given, else serialises it', () => {
    const [a, b] = [okEvent('img-a'), okEvent('img-b')];
    // Received with other spacing and key order than JSON.stringify gives: kept as it is.
    const received = `{ "id": "img-a", ${JSON.stringify(a).slice(1).replace('"id":"img-a",', '')}`;
    const text = storeBatchJson([storeRow(a), storeRow(b)], [received, undefined]);
    expect(text).toContain(`"event":${received}}`);
    expect(text).toContain(`"event":${JSON.stringify(b)}}`);
    expect(JSON.parse(text)).toEqual([storeRow(a), storeRow(b)]);
    expect(JSON.parse(storeBatchJson([]))).toEqual([]);
  });
});

describe('reads', () => {
  it('get: the latest by seq, or exactly one model version', () => {
    expect(squash(buildGetQuery('img-1').text)).toMatch(/WHERE image_id = \$1 ORDER BY seq DESC LIMIT 1$/);
    const versioned = buildGetQuery('img-1', 'v2');
    expect(squash(versioned.text)).toMatch(/WHERE image_id = \$1 AND model_version = \$2$/);
    expect(versioned.values).toEqual(['img-1', 'v2']);
  });

  it('after: oldest first from a cursor', () => {
    const q = buildAfterQuery(41n, 100);
    expect(squash(q.text)).toMatch(/WHERE seq > \$1::text::bigint ORDER BY seq ASC LIMIT \$2::int$/);
    expect(q.values).toEqual(['41', 100]);
  });
});
