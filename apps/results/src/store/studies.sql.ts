import { deviceResourceId, studyResourceId } from '../domain/resource-ids';
import type { StudyResult } from '../domain/study-aggregate';
import type { StudyListQuery } from './results-store.port';
import { RESULT_COLUMNS, type ResultRow, type SqlQuery } from './findings.sql';

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
 * Serialises writers of the same studies until their transaction ends, so two replicas storing
 * images of one study cannot both aggregate without the other's image. The locks are taken in
 * the order of their keys, so two batches that share studies cannot deadlock.
 */
export function buildStudyLockQuery(studyUids: readonly string[]): SqlQuery {
  return {
    text: `SELECT count(*) FROM (
             SELECT pg_advisory_xact_lock($1::int, key)
             FROM (SELECT DISTINCT hashtext(uid) AS key FROM unnest($2::text[]) AS uid ORDER BY 1) AS keys
           ) AS locked`,
    values: [STUDY_LOCK_NAMESPACE, studyUids],
  };
}

/**
 * The stored results of the studies, by study and oldest first, except the rows with the given
 * seqs (those the writer has in hand): with them, the input of the studies' aggregates. The seqs
 * are a hashed set (NOT IN a subquery), not `<> ALL` of an array, which compares every row
 * found with every seq of the batch.
 */
export function buildStudyRowsQuery(studyUids: readonly string[], exceptSeqs: readonly bigint[] = []): SqlQuery {
  return {
    text: `SELECT study_uid, ${RESULT_COLUMNS} FROM findings_results
           WHERE study_uid = ANY($1::text[]) AND seq NOT IN (SELECT unnest($2::text[]::bigint[]))
           ORDER BY study_uid, seq ASC`,
    values: [studyUids, exceptSeqs.map(String)],
  };
}

export type StudyResultRow = ResultRow & { study_uid: string };

/**
 * Upserts study aggregates (distinct studies) in one statement. A study's version and seq move
 * only when its document changes, so a redelivered event leaves the study (and its FHIR
 * resources) exactly as they were. Returns one row (WrittenStudies) naming only what was written,
 * without the documents, which the caller has.
 */
export function buildStudyUpsertQuery(results: readonly StudyResult[]): SqlQuery {
  const rows = results.map((result) => ({
    study_uid: result.studyUid,
    resource_id: studyResourceId(result.studyUid),
    status: result.status,
    accession: result.accession,
    patient_id: result.patientId,
    device_id: result.model ? deviceResourceId(result.model.name, result.model.version) : null,
    positives: result.positives,
    result,
  }));
  return {
    text: `
      WITH written AS (
        INSERT INTO study_results AS s (
          study_uid, resource_id, status, accession, patient_id, device_id, positives, result
        )
        SELECT study_uid, resource_id, status, accession, patient_id, device_id, positives, result
        FROM ROWS FROM (jsonb_to_recordset($1::text::jsonb) AS (
          study_uid text, resource_id text, status text, accession text, patient_id text, device_id text,
          positives text[], result jsonb
        )) WITH ORDINALITY AS input
        ORDER BY input.ordinality
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
        RETURNING study_uid, seq, version, published_version
      )
      SELECT coalesce(json_agg(json_build_array(study_uid, seq::text, version, published_version)), '[]')::text AS written,
             now() AS updated_at
      FROM written`,
    values: [JSON.stringify(rows)],
  };
}

/**
 * What the study upsert wrote, as its one row carries it: `written` is a JSON array with one
 * `[study_uid, seq, version, published_version]` per study written, `updated_at` the
 * transaction's timestamp, which every study written by the statement has.
 */
export interface WrittenStudies {
  written: string;
  updated_at: Date | string;
}

/** One entry of WrittenStudies.written. */
export type WrittenStudy = [studyUid: string, seq: string, version: number, publishedVersion: number];

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

/** Those of the studies whose current version has not been published to the FHIR topic. */
export function buildUnpublishedQuery(studyUids: readonly string[]): SqlQuery {
  return {
    text: `SELECT study_uid, ${STUDY_COLUMNS} FROM study_results WHERE study_uid = ANY($1::text[]) AND published_version < version`,
    values: [studyUids],
  };
}

/** Unpublished studies no result has changed for `quietMs` (the settle time of study grouping), oldest first. */
export function buildSettledQuery(quietMs: number, limit: number): SqlQuery {
  return {
    text: `SELECT study_uid FROM study_results
           WHERE published_version < version AND updated_at <= now() - ($1::double precision * interval '1 millisecond')
           ORDER BY seq LIMIT $2`,
    values: [quietMs, limit],
  };
}

/**
 * Records that study versions went out on the FHIR topic: a published version never moves
 * backwards, nor past the stored version (a bundle found on the topic of a store restored from an
 * older backup). Returns the studies that moved.
 */
export function buildMarkPublishedQuery(versions: readonly { studyUid: string; version: number }[]): SqlQuery {
  return {
    text: `UPDATE study_results AS s SET published_version = v.version
           FROM unnest($1::text[], $2::int[]) AS v (study_uid, version)
           WHERE s.study_uid = v.study_uid AND s.published_version < v.version AND v.version <= s.version
           RETURNING s.study_uid`,
    values: [versions.map((v) => v.studyUid), versions.map((v) => v.version)],
  };
}

/** When the oldest study version not yet published was stored (null: none pending). */
export function buildOldestUnpublishedQuery(): SqlQuery {
  return { text: 'SELECT min(updated_at) AS at FROM study_results WHERE published_version < version', values: [] };
}

/** Namespace and key of the advisory lock that makes one process the FHIR topic's publisher. */
export const FHIR_OUTBOX_LOCK = { namespace: 7306, key: 1 } as const;

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
