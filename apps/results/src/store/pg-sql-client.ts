import { Pool, type PoolClient } from 'pg';
import type { SqlClient, SqlExecutor } from './sql-client';

/** A PostgreSQL server through a pg connection pool (DATABASE_URL). */
export class PgSqlClient implements SqlClient {
  readonly engine = 'postgres';

  private constructor(private readonly pool: Pool) {}

  /** Opens a pool and checks that the server answers. */
  static async connect(options: {
    connectionString: string;
    max: number;
    onIdleError: (error: Error) => void;
  }): Promise<PgSqlClient> {
    const pool = new Pool({
      connectionString: options.connectionString,
      max: options.max,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      application_name: 'thorax-results',
    });
    // A dropped idle connection must not crash the process; the pool replaces it.
    pool.on('error', options.onIdleError);
    const client = new PgSqlClient(pool);
    try {
      await client.query('SELECT 1');
    } catch (error) {
      await pool.end();
      throw error;
    }
    return client;
  }

  async query<T>(text: string, params: readonly unknown[] = []): Promise<T[]> {
    const result = await this.pool.query(text, params as unknown[]);
    return result.rows as T[];
  }

  async exec(text: string): Promise<void> {
    await this.pool.query(text);
  }

  async transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(onConnection(client));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

function onConnection(client: PoolClient): SqlExecutor {
  return {
    async query<T>(text: string, params: readonly unknown[] = []): Promise<T[]> {
      const result = await client.query(text, params as unknown[]);
      return result.rows as T[];
    },
    async exec(text: string): Promise<void> {
      await client.query(text);
    },
  };
}
