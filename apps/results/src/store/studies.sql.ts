import { deviceResourceId, studyResourceId } from '../studies/resource-ids';
import type { StudyResult } from '../studies/study-aggregate';
import type { StudyListQuery } from './findings.repository';
import { RESULT_COLUMNS, type SqlQuery } from './findings.sql';

/** Columns every study read returns; seq as text so both drivers hand back the same type. */
export const STUDY_COLUMNS = 'seq::text AS seq, version, published_version, updated_at, result';

export interface StudyRow {
  seq: string;
  version: number | string;
  published_version: number | string;
  updated_at: Date | string;
  result: StudyResult | string;
}

/** Namespace of the per-study advisory locks (first key of pg_advisory_xact_lock(int, int)). */
const STUDY_LOCK_NAMESPACE = 7305;

/**
 * Serialises writers of one study until their transaction ends, so two replicas storing images
 * of the same study cannot both aggregate without the other's image.
 */
export function buildStudyLockQuery(studyUid: string): SqlQuery {
  return { text: 'SELECT pg_advisory_xact_lock($1::int, hashtext($2))', values: [STUDY_LOCK_NAMESPACE, studyUid] };
}

/** Every stored result of a study, oldest first: the input of the aggregate. */
export function buildStudyRowsQuery(studyUid: string): SqlQuery {
  return {
    text: `SELECT ${RESULT_COLUMNS} FROM findings_results WHERE study_uid = $1 ORDER BY seq ASC`,
    values: [studyUid],
  };
}

/**
 * Upserts a study aggregate. The version and seq move only when the document changes, so a
 * redelivered event leaves the study (and its FHIR resources) exactly as they were. Returns a
 * row only when something was written.
 */
export function buildStudyUpsertQuery(result: StudyResult): SqlQuery {
  return {
    text: `
      INSERT INTO study_results AS s (
        study_uid, resource_id, status, accession, patient_id, device_id, positives, result
      ) VALUES ($1, $2, $3, $4, $5, $6, $7::text[], $8::text::jsonb)
      ON CONFLICT (study_uid) DO UPDATE SET
        seq = nextval('study_results_seq'),
        version = s.version + 1,
        status = EXCLUDED.status,
        accession = EXCLUDED.accession,
        patient_id = EXCLUDED.patient_id,
        device_id = EXCLUDED.device_id,
        positives = EXCLUDED.positives,
        updated_at = now(),
        result = EXCLUDED.result
      WHERE s.result IS DISTINCT FROM EXCLUDED.result
      RETURNING ${STUDY_COLUMNS}`,
    values: [
      result.studyUid,
      studyResourceId(result.studyUid),
      result.status,
      result.accession,
      result.patientId,
      result.model ? deviceResourceId(result.model.name, result.model.version) : null,
      result.positives,
      JSON.stringify(result),
    ],
  };
}

export function buildStudyGetQuery(by: { studyUid: string } | { resourceId: string }): SqlQuery {
  return 'studyUid' in by
    ? { text: `SELECT ${STUDY_COLUMNS} FROM study_results WHERE study_uid = $1`, values: [by.studyUid] }
    : { text: `SELECT ${STUDY_COLUMNS} FROM study_results WHERE resource_id = $1`, values: [by.resourceId] };
}

/** Any study computed with the model behind a Device id (the Device is read from its document). */
export function buildStudyByDeviceQuery(deviceId: string): SqlQuery {
  return { text: `SELECT ${STUDY_COLUMNS} FROM study_results WHERE device_id = $1 LIMIT 1`, values: [deviceId] };
}

/** Newest first (by seq); one row more than the page to tell whether another page follows. */
export function buildStudyListQuery(query: StudyListQuery): SqlQuery {
  const where: string[] = [];
  const values: unknown[] = [];
  const param = (value: unknown, cast = ''): string => {
    values.push(value);
    return `$${values.length}${cast}`;
  };
  if (query.studyUid !== undefined) where.push(`study_uid = ${param(query.studyUid)}`);
  if (query.resourceId !== undefined) where.push(`resource_id = ${param(query.resourceId)}`);
  if (query.accession !== undefined) where.push(`accession = ${param(query.accession)}`);
  if (query.studyUidOrAccession !== undefined) {
    const value = param(query.studyUidOrAccession);
    where.push(`(study_uid = ${value} OR accession = ${value})`);
  }
  if (query.patientId !== undefined) where.push(`patient_id = ${param(query.patientId)}`);
  if (query.before !== undefined) where.push(`seq < ${param(query.before.toString(), '::text::bigint')}`);
  const limit = param(query.limit + 1, '::int');
  return {
    text: [`SELECT ${STUDY_COLUMNS} FROM study_results`, where.length > 0 ? `WHERE ${where.join(' AND ')}` : '', `ORDER BY seq DESC LIMIT ${limit}`]
      .filter((part) => part !== '')
      .join(' '),
    values,
  };
}

/** Records that a version of the study went out on the FHIR topic (never moves backwards). */
export function buildMarkPublishedQuery(studyUid: string, version: number): SqlQuery {
  return {
    text: 'UPDATE study_results SET published_version = $2::int WHERE study_uid = $1 AND published_version < $2::int',
    values: [studyUid, version],
  };
}

/** Studies with stored results but no aggregate (results stored before schema version 2). */
export function buildStudiesWithoutAggregateQuery(): SqlQuery {
  return {
    text: `SELECT DISTINCT f.study_uid FROM findings_results f
           WHERE f.study_uid IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM study_results s WHERE s.study_uid = f.study_uid)
           ORDER BY f.study_uid`,
    values: [],
  };
}
