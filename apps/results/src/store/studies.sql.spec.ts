import { aggregateStudy } from '../domain/study-aggregate';
import { okEvent } from '../testing/findings-events';
import { buildMarkPublishedQuery, buildStudyListQuery, buildStudyLockQuery, buildStudyUpsertQuery } from './studies.sql';

const squash = (sql: string): string => sql.replace(/\s+/g, ' ').trim();

describe('study queries', () => {
  it('upsert bumps version and seq only when the document changes', () => {
    const result = aggregateStudy('1.2.3', [{ seq: 1n, event: okEvent('a') }]);
    const q = buildStudyUpsertQuery([result]);
    expect(squash(q.text)).toContain('ON CONFLICT (study_uid) DO UPDATE SET seq = nextval(\'study_results_seq\'), version = s.version + 1');
    expect(squash(q.text)).toContain('WHERE s.result IS DISTINCT FROM EXCLUDED.result');
    const [row] = JSON.parse(q.values[0] as string) as Record<string, unknown>[];
    expect(row).toMatchObject({ study_uid: '1.2.3', resource_id: expect.stringMatching(/^[0-9a-f]{32}$/), status: 'ok', positives: result.positives });
    expect(row?.['device_id']).toMatch(/^[0-9a-f]{32}$/);
    expect(row?.['result']).toEqual(result);
    // What was written comes back as one row: a JSON array and the transaction's timestamp.
    expect(squash(q.text)).toContain(
      "SELECT coalesce(json_agg(json_build_array(study_uid, seq::text, version, published_version)), '[]')::text AS written, now() AS updated_at FROM written",
    );
  });

  it('lock and list never inline values', () => {
    expect(buildStudyLockQuery(["x'); DROP TABLE study_results; --"]).values).toEqual([7305, ["x'); DROP TABLE study_results; --"]]);
    expect(squash(buildStudyLockQuery(['b', 'a']).text)).toContain('ORDER BY 1');
    const q = buildStudyListQuery({ studyUidOrAccession: "1.2'", patientId: 'P', before: 10n, limit: 5 });
    expect(squash(q.text)).toBe(
      'SELECT seq::text AS seq, version, published_version, updated_at, result FROM study_results WHERE (study_uid = $1 OR accession = $1) AND patient_id = $2 AND seq < $3::text::bigint ORDER BY seq DESC LIMIT $4::int',
    );
    expect(q.values).toEqual(["1.2'", 'P', '10', 6]);
  });

  it('marking published never moves a version backwards', () => {
    const q = buildMarkPublishedQuery([{ studyUid: 'a', version: 3 }, { studyUid: 'b', version: 1 }]);
    expect(squash(q.text)).toContain('s.published_version < v.version');
    expect(q.values).toEqual([['a', 'b'], [3, 1]]);
  });
});
