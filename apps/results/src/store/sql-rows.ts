import type { FindingsEvent } from '@thorax/contracts';
import type { StudyResult } from '../domain/study-aggregate';
import type { ResultRow, SqlQuery } from './findings.sql';
import type { StoredFindings, StoredStudy } from './results-store.port';
import type { SqlExecutor } from './sql-client';
import type { StudyRow } from './studies.sql';

/** Runs a built query; resolves to its rows. */
export function run<T>(db: SqlExecutor, query: SqlQuery): Promise<T[]> {
  return db.query<T>(query.text, query.values);
}

/** pg hands back Date objects for timestamptz and parsed jsonb; other paths may give strings. */
export function toDate(value: Date | string): Date {
  return value instanceof Date ? value : new Date(value);
}

export function toStored(row: ResultRow): StoredFindings {
  return {
    seq: BigInt(row.seq),
    event: typeof row.event === 'string' ? (JSON.parse(row.event) as FindingsEvent) : row.event,
    storedAt: toDate(row.stored_at),
  };
}

export function toStoredStudy(row: StudyRow): StoredStudy {
  return {
    seq: BigInt(row.seq),
    version: Number(row.version),
    publishedVersion: Number(row.published_version),
    updatedAt: toDate(row.updated_at),
    result: typeof row.result === 'string' ? (JSON.parse(row.result) as StudyResult) : row.result,
  };
}
