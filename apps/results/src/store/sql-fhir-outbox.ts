import type { FhirOutbox, StoredStudy } from './results-store.port';
import type { SqlExecutor } from './sql-client';
import { run, toStoredStudy } from './sql-rows';
import { buildMarkPublishedQuery, buildSettledQuery, buildUnpublishedQuery, type StudyRow } from './studies.sql';

export class SqlFhirOutbox implements FhirOutbox {
  constructor(private readonly db: SqlExecutor) {}

  async unpublished(studyUids: readonly string[]): Promise<StoredStudy[]> {
    if (studyUids.length === 0) return [];
    const rows = await run<StudyRow & { study_uid: string }>(this.db, buildUnpublishedQuery(studyUids));
    const byUid = new Map(rows.map((row) => [row.study_uid, toStoredStudy(row)]));
    return studyUids.flatMap((uid) => byUid.get(uid) ?? []);
  }

  async markPublished(versions: readonly { studyUid: string; version: number }[]): Promise<void> {
    const highest = new Map<string, number>();
    for (const { studyUid, version } of versions) highest.set(studyUid, Math.max(version, highest.get(studyUid) ?? 0));
    if (highest.size === 0) return;
    await run(this.db, buildMarkPublishedQuery([...highest].map(([studyUid, version]) => ({ studyUid, version }))));
  }

  async settled(quietMs: number, limit: number): Promise<string[]> {
    const rows = await run<{ study_uid: string }>(this.db, buildSettledQuery(quietMs, limit));
    return rows.map((row) => row.study_uid);
  }
}
