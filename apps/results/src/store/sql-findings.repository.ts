import type { FindingsEvent } from '@thorax/contracts';
import { EventEmitter } from 'node:events';
import type {
  FindingsListQuery,
  FindingsPage,
  FindingsRepository,
  StoredFindings,
  StoreOutcome,
} from './findings.repository';
import {
  buildAfterQuery,
  buildGetQuery,
  buildListQuery,
  buildStoreQuery,
  type ResultRow,
  type SqlQuery,
} from './findings.sql';
import type { SqlClient } from './sql-client';

const STORED = 'stored';

/** The findings store on any PostgreSQL-dialect engine (PGlite or a server): same SQL on both. */
export class SqlFindingsRepository implements FindingsRepository {
  private readonly stored = new EventEmitter();

  constructor(private readonly db: SqlClient) {
    this.stored.setMaxListeners(0);
  }

  async store(event: FindingsEvent): Promise<StoreOutcome> {
    const [row] = await this.run<ResultRow & { inserted: boolean }>(buildStoreQuery(event));
    if (!row) return { kind: 'duplicate' };
    const record = toStored(row);
    try {
      this.stored.emit(STORED, record);
    } catch {
      // The row is durable; a failing listener must not make the caller store it again.
    }
    return { kind: row.inserted ? 'stored' : 'replaced', record };
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

  onStored(listener: (record: StoredFindings) => void): () => void {
    this.stored.on(STORED, listener);
    return () => this.stored.off(STORED, listener);
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  private run<T>(query: SqlQuery): Promise<T[]> {
    return this.db.query<T>(query.text, query.values);
  }
}

function toStored(row: ResultRow): StoredFindings {
  return {
    seq: BigInt(row.seq),
    event: typeof row.event === 'string' ? (JSON.parse(row.event) as FindingsEvent) : row.event,
    storedAt: row.stored_at instanceof Date ? row.stored_at : new Date(row.stored_at),
  };
}
