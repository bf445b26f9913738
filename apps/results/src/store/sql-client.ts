/**
 * The one seam between the results store and a PostgreSQL engine. Both back ends (embedded
 * PGlite and a pg Pool on a real server) speak the same PostgreSQL dialect, so the repository
 * and the migrations run the same SQL on either.
 */
export interface SqlExecutor {
  /** One statement with $1… parameters; resolves to its rows. */
  query<T>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** One or more statements without parameters (migrations). */
  exec(text: string): Promise<void>;
}

export interface SqlClient extends SqlExecutor {
  /** What runs underneath, for logs: `pglite` (embedded) or `postgres` (a server). */
  readonly engine: 'pglite' | 'postgres';
  /** Runs the work in one transaction on one connection; rolls back if it throws. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /**
   * A connection of its own for session state (an advisory lock held while it lives), outside
   * the pool. The embedded engine has one session, shared.
   */
  session(): Promise<SqlSession>;
  close(): Promise<void>;
}

/** A dedicated connection: session-level locks last until it is released or lost. */
export interface SqlSession extends SqlExecutor {
  /** Settles when the connection is gone (server restart, network): its session locks are too. */
  readonly lost: Promise<Error>;
  release(): Promise<void>;
}

/** SQLSTATE of a database error, when the error carries one. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}
