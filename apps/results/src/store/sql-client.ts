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
  close(): Promise<void>;
}

/** SQLSTATE of a database error, when the error carries one. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}
