import { PGlite, type Transaction } from '@electric-sql/pglite';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { SqlClient, SqlExecutor, SqlSession } from './sql-client';

export const IN_MEMORY = 'memory://';

/**
 * Embedded PostgreSQL (PGlite, WebAssembly) with its data directory on local disk, or in memory
 * for tests. One process may open a data directory at a time.
 */
export class PgliteSqlClient implements SqlClient {
  readonly engine = 'pglite';

  private constructor(private readonly db: PGlite) {}

  static async open(dataDir: string): Promise<PgliteSqlClient> {
    if (dataDir.startsWith(IN_MEMORY)) return new PgliteSqlClient(await PGlite.create(dataDir));
    const dir = path.resolve(dataDir);
    await mkdir(dir, { recursive: true });
    return new PgliteSqlClient(await PGlite.create(dir));
  }

  async query<T>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    const result = await this.db.query<T>(text, params as unknown[]);
    return result.rows;
  }

  async exec(text: string): Promise<void> {
    await this.db.exec(text);
  }

  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.db.transaction((tx) => work(onTransaction(tx)));
  }

  /** The one session of the embedded engine (one process per data directory): never lost. */
  async session(): Promise<SqlSession> {
    return {
      lost: new Promise<Error>(() => undefined),
      query: <T>(text: string, params?: readonly unknown[]) => this.query<T>(text, params),
      exec: (text: string) => this.exec(text),
      release: async () => undefined,
    };
  }

  async close(): Promise<void> {
    if (!this.db.closed) await this.db.close();
  }
}

function onTransaction(tx: Transaction): SqlExecutor {
  return {
    async query<T>(text: string, params: readonly unknown[] = []): Promise<T[]> {
      return (await tx.query<T>(text, params as unknown[])).rows;
    },
    async exec(text: string): Promise<void> {
      await tx.exec(text);
    },
  };
}
