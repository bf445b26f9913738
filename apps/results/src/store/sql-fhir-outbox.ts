import type { FhirOutbox, FhirOutboxControl, OutboxOwnership, StoredStudy } from './results-store.port';
import type { SqlClient } from './sql-client';
import { run, toDate, toStoredStudy } from './sql-rows';
import {
  buildMarkPublishedQuery,
  buildOldestUnpublishedQuery,
  buildSettledQuery,
  buildUnpublishedQuery,
  FHIR_OUTBOX_LOCK,
  type StudyRow,
} from './studies.sql';

export class SqlFhirOutbox implements FhirOutbox, FhirOutboxControl {
  constructor(private readonly db: SqlClient) {}

  async unpublished(studyUids: readonly string[]): Promise<StoredStudy[]> {
    if (studyUids.length === 0) return [];
    const rows = await run<StudyRow & { study_uid: string }>(this.db, buildUnpublishedQuery(studyUids));
    const byUid = new Map(rows.map((row) => [row.study_uid, toStoredStudy(row)]));
    return studyUids.flatMap((uid) => byUid.get(uid) ?? []);
  }

  async markPublished(versions: readonly { studyUid: string; version: number }[]): Promise<void> {
    await this.markFound(versions);
  }

  async markFound(versions: readonly { studyUid: string; version: number }[]): Promise<number> {
    const highest = new Map<string, number>();
    for (const { studyUid, version } of versions) highest.set(studyUid, Math.max(version, highest.get(studyUid) ?? 0));
    if (highest.size === 0) return 0;
    const moved = await run(this.db, buildMarkPublishedQuery([...highest].map(([studyUid, version]) => ({ studyUid, version }))));
    return moved.length;
  }

  async settled(quietMs: number, limit: number): Promise<string[]> {
    const rows = await run<{ study_uid: string }>(this.db, buildSettledQuery(quietMs, limit));
    return rows.map((row) => row.study_uid);
  }

  async oldestUnpublishedAt(): Promise<Date | null> {
    const [row] = await run<{ at: Date | string | null }>(this.db, buildOldestUnpublishedQuery());
    return row?.at ? toDate(row.at) : null;
  }

  /**
   * A session-level advisory lock on a connection of its own: a process that dies (kill -9, a
   * lost host) loses its connection and with it the lock, so another replica takes over.
   */
  async own(): Promise<OutboxOwnership | null> {
    const session = await this.db.session();
    const { namespace, key } = FHIR_OUTBOX_LOCK;
    try {
      const [row] = await session.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::int, $2::int) AS locked', [namespace, key]);
      if (!row?.locked) {
        await session.release();
        return null;
      }
    } catch (error) {
      await session.release();
      throw error;
    }
    let released = false;
    return {
      lost: session.lost,
      release: async () => {
        if (released) return;
        released = true;
        await session.query('SELECT pg_advisory_unlock($1::int, $2::int)', [namespace, key]).catch(() => undefined);
        await session.release();
      },
    };
  }
}
