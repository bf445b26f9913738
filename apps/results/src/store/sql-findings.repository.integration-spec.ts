import type { FindingsEvent } from '@thorax/contracts';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { errorEvent, okEvent } from '../testing/findings-events';
import { followFindings } from './findings-feed';
import { migrate, MIGRATIONS } from './migrations';
import { PgSqlClient } from './pg-sql-client';
import { PgliteSqlClient } from './pglite-sql-client';
import type { SqlClient } from './sql-client';
import { SqlFindingsRepository } from './sql-findings.repository';
import { classifyStoreError } from './store-errors';

jest.setTimeout(60_000);


/**
 * The same repository suite against both back ends: embedded PGlite, and a PostgreSQL server when
 * DATABASE_URL is set (CI sets it). On the server each run works in a fresh schema, dropped after.
 */
interface Backend {
  name: string;
  open(): Promise<SqlClient>;
  cleanup?(): Promise<void>;
}

const databaseUrl = process.env.DATABASE_URL;

function serverBackend(url: string): Backend {
  const schema = `results_test_${randomUUID().replace(/-/g, '')}`;
  const withSchema = (): string => {
    const u = new URL(url);
    u.searchParams.set('options', `-c search_path=${schema}`);
    return u.toString();
  };
  return {
    name: 'PostgreSQL server (DATABASE_URL)',
    async open() {
      const admin = await PgSqlClient.connect({ connectionString: url, max: 1, onIdleError: () => undefined });
      await admin.exec(`CREATE SCHEMA ${schema}`);
      await admin.close();
      return PgSqlClient.connect({ connectionString: withSchema(), max: 8, onIdleError: () => undefined });
    },
    async cleanup() {
      const admin = await PgSqlClient.connect({ connectionString: url, max: 1, onIdleError: () => undefined });
      await admin.exec(`DROP SCHEMA ${schema} CASCADE`);
      await admin.close();
    },
  };
}

const backends: Backend[] = [{ name: 'PGlite (in memory)', open: () => PgliteSqlClient.open('memory://') }];
if (databaseUrl) backends.push(serverBackend(databaseUrl));
else {
  // eslint-disable-next-line no-console
  console.warn(
    '[results] DATABASE_URL is not set: the repository suite runs on PGlite only; ' +
      'set DATABASE_URL=postgres://… to also run it against a PostgreSQL server.',
  );
}

describe.each(backends)('SqlFindingsRepository on $name', (backend) => {
  let db: SqlClient;
  let repo: SqlFindingsRepository;

  beforeAll(async () => {
    db = await backend.open();
    expect(await migrate(db)).toEqual(MIGRATIONS.map((m) => m.version));
    repo = new SqlFindingsRepository(db);
  });

  afterAll(async () => {
    await db?.close();
    await backend.cleanup?.();
  });

  const unique = (prefix: string): string => `${prefix}-${randomUUID()}`;
  const rowsOf = async (id: string): Promise<number> =>
    Number((await db.query<{ n: string | number }>('SELECT count(*) AS n FROM findings_results WHERE image_id = $1', [id]))[0]!.n);

  it('migrations are recorded and applied once, also when replicas start together', async () => {
    expect(await migrate(db)).toEqual([]);
    // On a server each call takes its own pooled connection; the advisory lock serialises them.
    const results = await Promise.all([migrate(db), migrate(db), migrate(db)]);
    expect(results).toEqual([[], [], []]);
    const applied = await db.query<{ version: number }>('SELECT version FROM results_schema_migrations ORDER BY version');
    expect(applied.map((r) => Number(r.version))).toEqual(MIGRATIONS.map((m) => m.version));
  });

  it('stores an event once however often it is delivered', async () => {
    const id = unique('img');
    const event = okEvent(id);
    const first = await repo.store(event);
    expect(first.kind).toBe('stored');
    const sequential = [];
    for (let i = 0; i < 49; i += 1) sequential.push((await repo.store(event)).kind);
    const concurrent = await Promise.all(Array.from({ length: 50 }, () => repo.store(event)));
    expect(new Set([...sequential, ...concurrent.map((o) => o.kind)])).toEqual(new Set(['duplicate']));
    expect(await rowsOf(id)).toBe(1);
    const stored = await repo.get(id);
    expect(stored?.event).toEqual(event);
    expect(first.kind === 'stored' && stored?.seq).toBe(first.kind === 'stored' ? first.record.seq : false);
  });

  it('keeps a newer model version beside the old one and returns the latest', async () => {
    const id = unique('img');
    const v1 = okEvent(id, { version: '2026.11.30-1', positives: ['Mass'] });
    const v2 = okEvent(id, { version: '2026.12.07-1', positives: ['Edema'] });
    await repo.store(v1);
    await repo.store(v2);
    await repo.store(v1); // a late redelivery of the old version does not make it the latest
    expect(await rowsOf(id)).toBe(2);
    expect((await repo.get(id))?.event).toEqual(v2);
    expect((await repo.get(id, '2026.11.30-1'))?.event).toEqual(v1);
    expect(await repo.get(id, 'no-such-version')).toBeNull();
    expect(await repo.get(unique('absent'))).toBeNull();
  });

  it('keeps one row for an error event and lets a different outcome replace it', async () => {
    const id = unique('img');
    const failed = errorEvent(id, { message: 'truncated PNG' });
    const first = await repo.store(failed);
    expect(first.kind).toBe('stored');
    expect((await repo.store(failed)).kind).toBe('duplicate');
    const again = errorEvent(id, { message: 'truncated PNG, second attempt' });
    const replaced = await repo.store(again);
    expect(replaced.kind).toBe('replaced');
    expect(replaced.kind === 'replaced' && first.kind === 'stored' && replaced.record.seq > first.record.seq).toBe(true);
    expect(await rowsOf(id)).toBe(1);
    expect((await repo.get(id))?.event).toEqual(again);

    // An ok result is the latest once stored; a stale error for the same model never overwrites it.
    const ok = okEvent(id);
    expect((await repo.store(ok)).kind).toBe('stored');
    expect((await repo.get(id))?.event).toEqual(ok);
    const inferenceFailed: FindingsEvent = { ...errorEvent(id), model: ok.model, error: { code: 'INFERENCE_FAILED', stage: 'inference', message: 'x' } };
    expect((await repo.store(inferenceFailed)).kind).toBe('duplicate');
    expect((await repo.get(id))?.event).toEqual(ok);
    expect(await rowsOf(id)).toBe(2);
  });

  it('an ok result supersedes an error of the same model version', async () => {
    const id = unique('img');
    const ok = okEvent(id);
    const failed: FindingsEvent = { ...errorEvent(id), model: ok.model, error: { code: 'INFERENCE_FAILED', stage: 'inference', message: 'busy' } };
    await repo.store(failed);
    expect((await repo.store(ok)).kind).toBe('replaced');
    expect(await rowsOf(id)).toBe(1);
    expect((await repo.get(id))?.event).toEqual(ok);
  });

  it('lists newest first with filters and cursor pagination', async () => {
    const study = unique('study');
    const ids = Array.from({ length: 7 }, (_, i) => `${study}-img-${i}`);
    for (const [i, id] of ids.entries()) {
      const info = { studyUid: study, accession: i < 4 ? `${study}-A` : `${study}-B` };
      await repo.store(i === 5 ? errorEvent(id, { study: info }) : okEvent(id, { study: info, positives: i % 2 === 0 ? ['Mass', 'Edema'] : ['Hernia'] }));
    }
    const newestFirst = [...ids].reverse();

    const seen: string[] = [];
    let before: bigint | undefined;
    const sizes: number[] = [];
    for (;;) {
      const page = await repo.list({ studyUid: study, limit: 3, ...(before === undefined ? {} : { before }) });
      sizes.push(page.items.length);
      seen.push(...page.items.map((r) => r.event.id));
      if (page.next === null) break;
      before = page.next;
    }
    expect(sizes).toEqual([3, 3, 1]);
    expect(seen).toEqual(newestFirst);

    const ids_ = async (query: Parameters<typeof repo.list>[0]): Promise<string[]> =>
      (await repo.list(query)).items.map((r) => r.event.id);
    expect(await ids_({ accession: `${study}-B`, limit: 50 })).toEqual([ids[6], ids[5], ids[4]]);
    expect(await ids_({ studyUid: study, status: 'error', limit: 50 })).toEqual([ids[5]]);
    expect(await ids_({ studyUid: study, positiveLabel: 'Mass', limit: 50 })).toEqual([ids[6], ids[4], ids[2], ids[0]]);
    expect(await ids_({ studyUid: study, positiveLabel: 'Hernia', status: 'ok', limit: 50 })).toEqual([ids[3], ids[1]]);
    expect(await ids_({ studyUid: study, positiveLabel: 'Pneumonia', limit: 50 })).toEqual([]);
    const exact = await repo.list({ studyUid: study, limit: 7 });
    expect(exact.items).toHaveLength(7);
    expect(exact.next).toBeNull();
  });

  it('watch replays everything after a cursor, then streams new results as they are stored', async () => {
    const study = unique('watch');
    const first = await repo.store(okEvent(`${study}-0`));
    if (first.kind === 'duplicate') throw new Error('expected a new row');
    await repo.store(okEvent(`${study}-1`));
    await repo.store(errorEvent(`${study}-2`));

    const received: string[] = [];
    const seqs: bigint[] = [];
    const controller = new AbortController();
    const following = followFindings(
      repo,
      first.record.seq,
      (record) => {
        received.push(record.event.id);
        seqs.push(record.seq);
      },
      { signal: controller.signal, pollMs: 60_000, batchSize: 2 },
    );
    await waitFor(() => received.length >= 2);
    expect(received).toEqual([`${study}-1`, `${study}-2`]);

    await repo.store(okEvent(`${study}-3`));
    await repo.store(okEvent(`${study}-3`)); // a redelivery is not streamed again
    await repo.store(errorEvent(`${study}-4`));
    await waitFor(() => received.length >= 4);
    await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    await following;
    expect(received).toEqual([`${study}-1`, `${study}-2`, `${study}-3`, `${study}-4`]);
    expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  });

  it('refuses what PostgreSQL cannot store, as a permanent error', async () => {
    const event = errorEvent(unique('img'), { message: 'nul \u0000 inside' });
    const error = await repo.store(event).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).not.toBeNull();
    expect(classifyStoreError(error)).toMatchObject({ code: 'INVALID_MESSAGE', transient: false });
  });

  it('reports the latest sequence', async () => {
    const outcome = await repo.store(okEvent(unique('img')));
    expect(outcome.kind).toBe('stored');
    if (outcome.kind === 'stored') expect(await repo.latestSeq()).toBe(outcome.record.seq);
  });
});

describe('PGlite on disk', () => {
  it('keeps results across restarts and does not re-run migrations', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'thorax-results-'));
    try {
      const first = await PgliteSqlClient.open(path.join(dir, 'data'));
      expect(await migrate(first)).toEqual([1]);
      const event = okEvent('img-persisted');
      await new SqlFindingsRepository(first).store(event);
      await first.close();

      const second = await PgliteSqlClient.open(path.join(dir, 'data'));
      expect(await migrate(second)).toEqual([]);
      expect((await new SqlFindingsRepository(second).get('img-persisted'))?.event).toEqual(event);
      await second.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
