import { Pool, type PoolClient } from 'pg';
import type { SqlClient, SqlExecutor } from './sql-client';

/** A PostgreSQL server through a pg connection pool (DATABASE_URL). */
export class PgSqlClient implements SqlClient {
  readonly engine = 'postgres';

  private constructor(
    private readonly pool: Pool,
    private readonly onClientError: (error: Error) => void,
  ) {}

  /** Opens a pool and checks that the server answers. */
  static async connect(options: {
    connectionString: string;
    max: number;
    onIdleError: (error: Error) => void;
    /** A connection held by a transaction was dropped (the transaction fails); default: onIdleError. */
    onClientError?: (error: Error) => void;
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
    const client = new PgSqlClient(pool, options.onClientError ?? options.onIdleError);
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
    // The pool listens for errors on idle connections only: one that the server drops while a
    // transaction holds it (a restart, a failover) emits 'error' here, and without a listener
    // that would crash the process. The transaction's next statement fails instead.
    let broken: Error | undefined;
    const onError = (error: Error) => {
      broken = error;
      this.onClientError(error);
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await work(onConnection(client));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      if (!broken) await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.off('error', onError);
      // A broken connection is closed, not handed back to the pool.
      client.release(broken ?? false);
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
