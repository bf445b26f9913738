import type { FindingsEvent } from '@thorax/contracts';
import type { FindingsListQuery } from './findings.repository';

/** Model version key of results that carry no model (error events before inference). */
export const NO_MODEL_VERSION = '';

export interface SqlQuery {
  text: string;
  values: unknown[];
}

/** Columns every read returns; seq as text so both drivers hand back the same type. */
export const RESULT_COLUMNS = 'seq::text AS seq, event, stored_at';

export interface ResultRow {
  seq: string;
  event: FindingsEvent | string;
  stored_at: Date | string;
}

/**
 * Idempotent upsert of one event. A conflicting ok row is kept as it is; a conflicting error
 * row is replaced (with a fresh seq, so readers and watchers see it as new) unless the incoming
 * event is the same one. Returns a row only when something was written.
 */
export function buildStoreQuery(event: FindingsEvent): SqlQuery {
  return {
    text: `
      INSERT INTO findings_results AS r (
        image_id, model_version, status, model_name, study_uid, accession,
        error_code, error_stage, positives, received_at, completed_at, event
      ) VALUES (
        $1, $2, $3, $4, $5, $6, $7, $8, $9::text[], $10::text::timestamptz, $11::text::timestamptz, $12::text::jsonb
      )
      ON CONFLICT (image_id, model_version) DO UPDATE SET
        seq = nextval(pg_get_serial_sequence('findings_results', 'seq')),
        status = EXCLUDED.status,
        model_name = EXCLUDED.model_name,
        study_uid = EXCLUDED.study_uid,
        accession = EXCLUDED.accession,
        error_code = EXCLUDED.error_code,
        error_stage = EXCLUDED.error_stage,
        positives = EXCLUDED.positives,
        received_at = EXCLUDED.received_at,
        completed_at = EXCLUDED.completed_at,
        stored_at = now(),
        event = EXCLUDED.event
      WHERE r.status = 'error' AND r.event IS DISTINCT FROM EXCLUDED.event
      RETURNING ${RESULT_COLUMNS}, (xmax = 0) AS inserted`,
    values: [
      event.id,
      event.model?.version ?? NO_MODEL_VERSION,
      event.status,
      event.model?.name ?? null,
      event.study.studyUid || null,
      event.study.accession || null,
      event.error?.code ?? null,
      event.error?.stage ?? null,
      event.positives,
      event.timing.receivedAt,
      event.timing.completedAt,
      JSON.stringify(event),
    ],
  };
}

export function buildGetQuery(id: string, modelVersion?: string): SqlQuery {
  if (modelVersion === undefined) {
    return {
      text: `SELECT ${RESULT_COLUMNS} FROM findings_results WHERE image_id = $1 ORDER BY seq DESC LIMIT 1`,
      values: [id],
    };
  }
  return {
    text: `SELECT ${RESULT_COLUMNS} FROM findings_results WHERE image_id = $1 AND model_version = $2`,
    values: [id, modelVersion],
  };
}

/** Newest first; fetches one row more than the page to tell whether another page follows. */
export function buildListQuery(query: FindingsListQuery): SqlQuery {
  const where: string[] = [];
  const values: unknown[] = [];
  const param = (value: unknown, cast = ''): string => {
    values.push(value);
    return `$${values.length}${cast}`;
  };
  if (query.studyUid !== undefined) where.push(`study_uid = ${param(query.studyUid)}`);
  if (query.accession !== undefined) where.push(`accession = ${param(query.accession)}`);
  if (query.status !== undefined) where.push(`status = ${param(query.status)}`);
  if (query.positiveLabel !== undefined) where.push(`positives @> ARRAY[${param(query.positiveLabel, '::text')}]`);
  if (query.from !== undefined) where.push(`completed_at >= ${param(query.from.toISOString(), '::text::timestamptz')}`);
  if (query.to !== undefined) where.push(`completed_at < ${param(query.to.toISOString(), '::text::timestamptz')}`);
  if (query.before !== undefined) where.push(`seq < ${param(query.before.toString(), '::text::bigint')}`);
  const limit = param(query.limit + 1, '::int');
  return {
    text: [
      `SELECT ${RESULT_COLUMNS} FROM findings_results`,
      where.length > 0 ? `WHERE ${where.join(' AND ')}` : '',
      `ORDER BY seq DESC LIMIT ${limit}`,
    ]
      .filter((part) => part !== '')
      .join(' '),
    values,
  };
}

export function buildAfterQuery(seq: bigint, limit: number): SqlQuery {
  return {
    text: `SELECT ${RESULT_COLUMNS} FROM findings_results WHERE seq > $1::text::bigint ORDER BY seq ASC LIMIT $2::int`,
    values: [seq.toString(), limit],
  };
}
