import { Client, Pool, type PoolClient } from 'pg';
import type { SqlClient, SqlExecutor, SqlSession } from './sql-client';

/** A PostgreSQL server through a pg connection pool (DATABASE_URL). */
export class PgSqlClient implements SqlClient {
  readonly engine = 'postgres';

  private constructor(
    private readonly pool: Pool,
    private readonly onClientError: (error: Error) => void,
    private readonly connectionString: string,
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
    const client = new PgSqlClient(pool, options.onClientError ?? options.onIdleError, options.connectionString);
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

  /**
   * A connection outside the pool. The server is told to probe it (TCP keepalives, user timeout)
   * so that a lock it holds is freed within about 30 s of its host vanishing, not hours.
   */
  async session(): Promise<SqlSession> {
    const client = new Client({
      connectionString: this.connectionString,
      application_name: 'thorax-results-session',
      connectionTimeoutMillis: 10_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    let markLost: (error: Error) => void = () => undefined;
    const lost = new Promise<Error>((resolve) => (markLost = resolve));
    let released = false;
    client.on('error', (error) => markLost(error));
    client.on('end', () => markLost(new Error(released ? 'session released' : 'database session ended')));
    await client.connect();
    try {
      await client.query(
        'SELECT set_config($1, $2, false), set_config($3, $4, false), set_config($5, $6, false), set_config($7, $8, false)',
        ['tcp_keepalives_idle', '10', 'tcp_keepalives_interval', '5', 'tcp_keepalives_count', '3', 'tcp_user_timeout', '30000'],
      );
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    return {
      lost,
      async query<T>(text: string, params: readonly unknown[] = []): Promise<T[]> {
        return (await client.query(text, params as unknown[])).rows as T[];
      },
      async exec(text: string): Promise<void> {
        await client.query(text);
      },
      async release(): Promise<void> {
        released = true;
        await client.end().catch(() => undefined);
      },
    };
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
