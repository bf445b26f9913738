import type { StoredStudy, StudyListQuery, StudyPage, StudyQueries } from './results-store.port';
import type { SqlExecutor } from './sql-client';
import { run, toStoredStudy } from './sql-rows';
import { buildStudyByDeviceQuery, buildStudyGetQuery, buildStudyListQuery, type StudyRow } from './studies.sql';

export class SqlStudyQueries implements StudyQueries {
  constructor(private readonly db: SqlExecutor) {}

  async get(by: { studyUid: string } | { resourceId: string }): Promise<StoredStudy | null> {
    const [row] = await run<StudyRow>(this.db, buildStudyGetQuery(by));
    return row ? toStoredStudy(row) : null;
  }

  async list(query: StudyListQuery): Promise<StudyPage> {
    const rows = await run<StudyRow>(this.db, buildStudyListQuery(query));
    const items = rows.slice(0, query.limit).map(toStoredStudy);
    const last = items.at(-1);
    return { items, next: rows.length > query.limit && last ? last.seq : null };
  }

  async byDevice(deviceId: string): Promise<StoredStudy | null> {
    const [row] = await run<StudyRow>(this.db, buildStudyByDeviceQuery(deviceId));
    return row ? toStoredStudy(row) : null;
  }
}
