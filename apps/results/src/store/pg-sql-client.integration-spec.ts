/**
 * PgSqlClient against a PostgreSQL server (DATABASE_URL, set by npm test): a server that drops a
 * connection in the middle of a transaction (a restart, a failover, an administrator) fails that
 * transaction and nothing else — it must not crash the process with an unhandled 'error' event.
 */
import { PgSqlClient } from './pg-sql-client';

jest.setTimeout(30_000);

const databaseUrl = process.env['DATABASE_URL'];
const onServer = databaseUrl ? describe : describe.skip;

onServer('PgSqlClient on a server that drops connections', () => {
  it('fails only the transaction whose connection was terminated, then serves on new connections', async () => {
    const idleErrors: Error[] = [];
    const clientErrors: Error[] = [];
    const uncaught: Error[] = [];
    const onUncaught = (error: Error) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    const client = await PgSqlClient.connect({
      connectionString: databaseUrl ?? '',
      max: 2,
      onIdleError: (error) => idleErrors.push(error),
      onClientError: (error) => clientErrors.push(error),
    });
    const admin = await PgSqlClient.connect({ connectionString: databaseUrl ?? '', max: 1, onIdleError: () => undefined });
    try {
      const outcome = client.transaction(async (tx) => {
        const [row] = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        // The server ends this backend while the transaction holds it, between two statements.
        await admin.query('SELECT pg_terminate_backend($1)', [row?.pid]);
        await new Promise((r) => setTimeout(r, 500));
        return tx.query('SELECT 1');
      });
      await expect(outcome).rejects.toThrow();
      expect(uncaught).toEqual([]);
      expect(clientErrors.map((e) => e.message).join()).toMatch(/terminat/);
      // The broken connection was discarded, not returned to the pool: the next ones work.
      for (let i = 0; i < 4; i += 1) expect(await client.query<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
      expect(await client.transaction((tx) => tx.query<{ two: number }>('SELECT 2 AS two'))).toEqual([{ two: 2 }]);
    } finally {
      process.off('uncaughtException', onUncaught);
      await admin.close();
      await client.close();
    }
  });
});
