import type { FindingsEvent } from '@thorax/contracts';
import type { FindingsListQuery } from './results-store.port';

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

/** The columns of one findings_results row, as the batch upsert reads them (jsonb_to_recordset). */
export interface StoreRow {
  image_id: string;
  model_version: string;
  status: FindingsEvent['status'];
  model_name: string | null;
  study_uid: string | null;
  accession: string | null;
  error_code: string | null;
  error_stage: string | null;
  positives: string[];
  received_at: string;
  completed_at: string;
  event: FindingsEvent;
}

/** The row an event is stored as: its key (id, model version) and the columns lists filter on. */
export function storeRow(event: FindingsEvent): StoreRow {
  return {
    image_id: event.id,
    model_version: event.model?.version ?? NO_MODEL_VERSION,
    status: event.status,
    model_name: event.model?.name ?? null,
    study_uid: event.study.studyUid || null,
    accession: event.study.accession || null,
    error_code: event.error?.code ?? null,
    error_stage: event.error?.stage ?? null,
    positives: event.positives,
    received_at: event.timing.receivedAt,
    completed_at: event.timing.completedAt,
    event,
  };
}

/**
 * What the batch upsert wrote, as its one row carries it: `written` is a JSON array with one
 * `[image_id, model_version, seq, inserted]` per row written (the rows travel back as one text
 * value, not as a result row each: decoding hundreds of result rows costs the embedded engine more
 * than the insert), `stored_at` the transaction's timestamp, which every row written by the
 * statement has.
 */
export interface WrittenRows {
  written: string;
  stored_at: Date | string;
}

/** One entry of WrittenRows.written. */
export type WrittenRow = [imageId: string, modelVersion: string, seq: string, inserted: boolean];

/**
 * The rows as the one JSON parameter of the batch upsert. `eventJson[i]`, when given, is row i's
 * event as received (the record value it was decoded and validated from): it goes in as it is
 * instead of being serialised again.
 */
export function storeBatchJson(rows: readonly StoreRow[], eventJson: readonly (string | undefined)[] = []): string {
  const parts = rows.map((row, i) => {
    const { event, ...columns } = row;
    const head = JSON.stringify(columns);
    return `${head.slice(0, -1)},"event":${eventJson[i] ?? JSON.stringify(event)}}`;
  });
  return `[${parts.join(',')}]`;
}

/**
 * Idempotent upsert of many events in one statement (their keys must be distinct: PostgreSQL
 * cannot update one row twice in a statement). All rows travel as one JSON parameter
 * (storeBatchJson). A conflicting ok row is kept as it is; a conflicting error row is replaced
 * (with a fresh seq, so readers and watchers see it as new) unless the incoming event is the same
 * one. Returns one row (WrittenRows) naming only what was written.
 */
export function buildStoreBatchQuery(rows: readonly StoreRow[], eventJson?: readonly (string | undefined)[]): SqlQuery {
  return {
    text: `
      WITH written AS (
        INSERT INTO findings_results AS r (
          image_id, model_version, status, model_name, study_uid, accession,
          error_code, error_stage, positives, received_at, completed_at, event
        )
        SELECT image_id, model_version, status, model_name, study_uid, accession,
               error_code, error_stage, positives, received_at, completed_at, event
        FROM ROWS FROM (jsonb_to_recordset($1::text::jsonb) AS (
          image_id text, model_version text, status text, model_name text, study_uid text, accession text,
          error_code text, error_stage text, positives text[], received_at timestamptz, completed_at timestamptz, event jsonb
        )) WITH ORDINALITY AS input
        ORDER BY input.ordinality
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
        RETURNING image_id, model_version, seq, (xmax = 0) AS inserted
      )
      SELECT coalesce(json_agg(json_build_array(image_id, model_version, seq::text, inserted)), '[]')::text AS written,
             now() AS stored_at
      FROM written`,
    values: [storeBatchJson(rows, eventJson)],
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
