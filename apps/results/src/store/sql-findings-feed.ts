import { buildAfterQuery, type ResultRow } from './findings.sql';
import type { FindingsFeed, StoredFindings } from './results-store.port';
import type { SqlExecutor } from './sql-client';
import { run, toStored } from './sql-rows';
import type { StoredSignal } from './stored-signal';

export class SqlFindingsFeed implements FindingsFeed {
  constructor(
    private readonly db: SqlExecutor,
    private readonly signal: StoredSignal,
  ) {}

  async after(seq: bigint, limit: number): Promise<StoredFindings[]> {
    return (await run<ResultRow>(this.db, buildAfterQuery(seq, limit))).map(toStored);
  }

  async latestSeq(): Promise<bigint> {
    const [row] = await this.db.query<{ seq: string }>('SELECT COALESCE(max(seq), 0)::text AS seq FROM findings_results');
    return BigInt(row?.seq ?? '0');
  }

  onStored(listener: () => void): () => void {
    return this.signal.subscribe(listener);
  }
}
