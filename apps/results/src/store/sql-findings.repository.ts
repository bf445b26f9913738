import type { FindingsEvent } from '@thorax/contracts';
import { EventEmitter } from 'node:events';
import { aggregateStudy, type StudyResult } from '../studies/study-aggregate';
import type {
  FindingsListQuery,
  FindingsPage,
  FindingsRepository,
  StoredFindings,
  StoredStudy,
  StoreOutcome,
  StudyListQuery,
  StudyPage,
} from './findings.repository';
import {
  buildAfterQuery,
  buildGetQuery,
  buildListQuery,
  buildStoreQuery,
  type ResultRow,
  type SqlQuery,
} from './findings.sql';
import type { SqlClient, SqlExecutor } from './sql-client';
import {
  buildStudyByDeviceQuery,
  buildStudyGetQuery,
  buildStudyListQuery,
  buildMarkPublishedQuery,
  buildStudiesWithoutAggregateQuery,
  buildStudyLockQuery,
  buildStudyRowsQuery,
  buildStudyUpsertQuery,
  type StudyRow,
} from './studies.sql';

const STORED = 'stored';

/** The findings store on any PostgreSQL-dialect engine (PGlite or a server): same SQL on both. */
export class SqlFindingsRepository implements FindingsRepository {
  private readonly stored = new EventEmitter();

  constructor(private readonly db: SqlClient) {
    this.stored.setMaxListeners(0);
  }

  async store(event: FindingsEvent): Promise<StoreOutcome> {
    const studyUid = event.study.studyUid || null;
    const outcome = await this.db.transaction(async (tx): Promise<StoreOutcome> => {
      // Lock the study first: the aggregate below must see every other committed image of it.
      if (studyUid) await run(tx, buildStudyLockQuery(studyUid));
      const [row] = await run<ResultRow & { inserted: boolean }>(tx, buildStoreQuery(event));
      if (!row) return { kind: 'duplicate' };
      const study = studyUid ? await aggregate(tx, studyUid) : null;
      return { kind: row.inserted ? 'stored' : 'replaced', record: toStored(row), study };
    });
    if (outcome.kind !== 'duplicate') {
      try {
        this.stored.emit(STORED, outcome.record);
      } catch {
        // The row is durable; a failing listener must not make the caller store it again.
      }
    }
    return outcome;
  }

  async get(id: string, modelVersion?: string): Promise<StoredFindings | null> {
    const [row] = await this.run<ResultRow>(buildGetQuery(id, modelVersion));
    return row ? toStored(row) : null;
  }

  async list(query: FindingsListQuery): Promise<FindingsPage> {
    const rows = await this.run<ResultRow>(buildListQuery(query));
    const items = rows.slice(0, query.limit).map(toStored);
    const more = rows.length > query.limit;
    const last = items.at(-1);
    return { items, next: more && last ? last.seq : null };
  }

  async after(seq: bigint, limit: number): Promise<StoredFindings[]> {
    return (await this.run<ResultRow>(buildAfterQuery(seq, limit))).map(toStored);
  }

  async latestSeq(): Promise<bigint> {
    const [row] = await this.db.query<{ seq: string }>('SELECT COALESCE(max(seq), 0)::text AS seq FROM findings_results');
    return BigInt(row?.seq ?? '0');
  }

  async getStudy(by: { studyUid: string } | { resourceId: string }): Promise<StoredStudy | null> {
    const [row] = await this.run<StudyRow>(buildStudyGetQuery(by));
    return row ? toStoredStudy(row) : null;
  }

  async listStudies(query: StudyListQuery): Promise<StudyPage> {
    const rows = await this.run<StudyRow>(buildStudyListQuery(query));
    const items = rows.slice(0, query.limit).map(toStoredStudy);
    const last = items.at(-1);
    return { items, next: rows.length > query.limit && last ? last.seq : null };
  }

  async studyByDevice(deviceId: string): Promise<StoredStudy | null> {
    const [row] = await this.run<StudyRow>(buildStudyByDeviceQuery(deviceId));
    return row ? toStoredStudy(row) : null;
  }

  /**
   * Computes the aggregate of every study that has results but no aggregate yet: results stored
   * before the study table existed (a store upgraded from schema version 1). Returns how many.
   */
  async backfillStudies(): Promise<number> {
    const missing = await this.db.query<{ study_uid: string }>(buildStudiesWithoutAggregateQuery().text);
    for (const { study_uid: studyUid } of missing) {
      await this.db.transaction(async (tx) => {
        await run(tx, buildStudyLockQuery(studyUid));
        await aggregate(tx, studyUid);
      });
    }
    return missing.length;
  }

  async markPublished(studyUid: string, version: number): Promise<void> {
    await this.run(buildMarkPublishedQuery(studyUid, version));
  }

  onStored(listener: (record: StoredFindings) => void): () => void {
    this.stored.on(STORED, listener);
    return () => this.stored.off(STORED, listener);
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  private run<T>(query: SqlQuery): Promise<T[]> {
    return run<T>(this.db, query);
  }
}

function run<T>(db: SqlExecutor, query: SqlQuery): Promise<T[]> {
  return db.query<T>(query.text, query.values);
}

/** Recomputes a study's aggregate from its stored results; returns it when it changed. */
async function aggregate(tx: SqlExecutor, studyUid: string): Promise<StoredStudy | null> {
  const rows = (await run<ResultRow>(tx, buildStudyRowsQuery(studyUid))).map(toStored);
  const result = aggregateStudy(studyUid, rows);
  const [row] = await run<StudyRow>(tx, buildStudyUpsertQuery(result));
  return row ? toStoredStudy(row) : null;
}

function toStoredStudy(row: StudyRow): StoredStudy {
  return {
    seq: BigInt(row.seq),
    version: Number(row.version),
    publishedVersion: Number(row.published_version),
    updatedAt: row.updated_at instanceof Date ? row.updated_at : new Date(row.updated_at),
    result: typeof row.result === 'string' ? (JSON.parse(row.result) as StudyResult) : row.result,
  };
}

function toStored(row: ResultRow): StoredFindings {
  return {
    seq: BigInt(row.seq),
    event: typeof row.event === 'string' ? (JSON.parse(row.event) as FindingsEvent) : row.event,
    storedAt: row.stored_at instanceof Date ? row.stored_at : new Date(row.stored_at),
  };
}
