import { buildGetQuery, buildListQuery, type ResultRow } from './findings.sql';
import type { FindingsListQuery, FindingsPage, FindingsQueries, StoredFindings } from './results-store.port';
import type { SqlExecutor } from './sql-client';
import { run, toStored } from './sql-rows';

export class SqlFindingsQueries implements FindingsQueries {
  constructor(private readonly db: SqlExecutor) {}

  async get(id: string, modelVersion?: string): Promise<StoredFindings | null> {
    const [row] = await run<ResultRow>(this.db, buildGetQuery(id, modelVersion));
    return row ? toStored(row) : null;
  }

  async list(query: FindingsListQuery): Promise<FindingsPage> {
    const rows = await run<ResultRow>(this.db, buildListQuery(query));
    const items = rows.slice(0, query.limit).map(toStored);
    const last = items.at(-1);
    return { items, next: rows.length > query.limit && last ? last.seq : null };
  }
}
