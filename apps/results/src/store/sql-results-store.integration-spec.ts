import type { FindingsEvent } from '@thorax/contracts';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { errorEvent, okEvent } from '../testing/findings-events';
import { storeOne } from '../testing/store-one';
import { followFindings } from '../findings/follow-findings';
import { buildStoreBatchQuery, storeRow } from './findings.sql';
import { migrate, MIGRATIONS } from './migrations';
import { PgSqlClient } from './pg-sql-client';
import { PgliteSqlClient } from './pglite-sql-client';
import type { SqlClient } from './sql-client';
import { backfillStudyAggregates } from './sql-findings-writer';
import { sqlResultsStore } from './sql-results-store';
import type { ResultsStore } from './results-store.port';
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

describe.each(backends)('the SQL results store on $name', (backend) => {
  let db: SqlClient;
  let repo: ResultsStore;

  beforeAll(async () => {
    db = await backend.open();
    expect(await migrate(db)).toEqual(MIGRATIONS.map((m) => m.version));
    repo = sqlResultsStore(db);
  });

  afterAll(async () => {
    await db?.close();
    await backend.cleanup?.();
  });

  const unique = (prefix: string): string => `${prefix}-${randomUUID()}`;
  const info = (studyUid: string, viewPosition?: string) => ({ studyUid, accession: `${studyUid}-ACC`, patientId: `${studyUid}-PAT`, ...(viewPosition ? { viewPosition } : {}) });
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
    const first = await storeOne(repo, event);
    expect(first.kind).toBe('stored');
    const sequential = [];
    for (let i = 0; i < 49; i += 1) sequential.push((await storeOne(repo, event)).kind);
    const concurrent = await Promise.all(Array.from({ length: 50 }, () => storeOne(repo, event)));
    expect(new Set([...sequential, ...concurrent.map((o) => o.kind)])).toEqual(new Set(['duplicate']));
    expect(await rowsOf(id)).toBe(1);
    const stored = await repo.findings.get(id);
    expect(stored?.event).toEqual(event);
    expect(first.kind === 'stored' && stored?.seq).toBe(first.kind === 'stored' ? first.record.seq : false);
  });

  it('keeps a newer model version beside the old one and returns the latest', async () => {
    const id = unique('img');
    const v1 = okEvent(id, { version: '2026.11.30-1', positives: ['Mass'] });
    const v2 = okEvent(id, { version: '2026.12.07-1', positives: ['Edema'] });
    await storeOne(repo, v1);
    await storeOne(repo, v2);
    await storeOne(repo, v1); // a late redelivery of the old version does not make it the latest
    expect(await rowsOf(id)).toBe(2);
    expect((await repo.findings.get(id))?.event).toEqual(v2);
    expect((await repo.findings.get(id, '2026.11.30-1'))?.event).toEqual(v1);
    expect(await repo.findings.get(id, 'no-such-version')).toBeNull();
    expect(await repo.findings.get(unique('absent'))).toBeNull();
  });

  it('keeps one row for an error event and lets a different outcome replace it', async () => {
    const id = unique('img');
    const failed = errorEvent(id, { message: 'truncated PNG' });
    const first = await storeOne(repo, failed);
    expect(first.kind).toBe('stored');
    expect((await storeOne(repo, failed)).kind).toBe('duplicate');
    const again = errorEvent(id, { message: 'truncated PNG, second attempt' });
    const replaced = await storeOne(repo, again);
    expect(replaced.kind).toBe('replaced');
    expect(replaced.kind === 'replaced' && first.kind === 'stored' && replaced.record.seq > first.record.seq).toBe(true);
    expect(await rowsOf(id)).toBe(1);
    expect((await repo.findings.get(id))?.event).toEqual(again);

    // An ok result is the latest once stored; a stale error for the same model never overwrites it.
    const ok = okEvent(id);
    expect((await storeOne(repo, ok)).kind).toBe('stored');
    expect((await repo.findings.get(id))?.event).toEqual(ok);
    const inferenceFailed: FindingsEvent = { ...errorEvent(id), model: ok.model, error: { code: 'INFERENCE_FAILED', stage: 'inference', message: 'x' } };
    expect((await storeOne(repo, inferenceFailed)).kind).toBe('duplicate');
    expect((await repo.findings.get(id))?.event).toEqual(ok);
    expect(await rowsOf(id)).toBe(2);
  });

  it('an ok result supersedes an error of the same model version', async () => {
    const id = unique('img');
    const ok = okEvent(id);
    const failed: FindingsEvent = { ...errorEvent(id), model: ok.model, error: { code: 'INFERENCE_FAILED', stage: 'inference', message: 'busy' } };
    await storeOne(repo, failed);
    expect((await storeOne(repo, ok)).kind).toBe('replaced');
    expect(await rowsOf(id)).toBe(1);
    expect((await repo.findings.get(id))?.event).toEqual(ok);
  });

  it('lists newest first with filters and cursor pagination', async () => {
    const study = unique('study');
    const ids = Array.from({ length: 7 }, (_, i) => `${study}-img-${i}`);
    for (const [i, id] of ids.entries()) {
      const info = { studyUid: study, accession: i < 4 ? `${study}-A` : `${study}-B` };
      await storeOne(repo, i === 5 ? errorEvent(id, { study: info }) : okEvent(id, { study: info, positives: i % 2 === 0 ? ['Mass', 'Edema'] : ['Hernia'] }));
    }
    const newestFirst = [...ids].reverse();

    const seen: string[] = [];
    let before: bigint | undefined;
    const sizes: number[] = [];
    for (;;) {
      const page = await repo.findings.list({ studyUid: study, limit: 3, ...(before === undefined ? {} : { before }) });
      sizes.push(page.items.length);
      seen.push(...page.items.map((r) => r.event.id));
      if (page.next === null) break;
      before = page.next;
    }
    expect(sizes).toEqual([3, 3, 1]);
    expect(seen).toEqual(newestFirst);

    const ids_ = async (query: Parameters<typeof repo.findings.list>[0]): Promise<string[]> =>
      (await repo.findings.list(query)).items.map((r) => r.event.id);
    expect(await ids_({ accession: `${study}-B`, limit: 50 })).toEqual([ids[6], ids[5], ids[4]]);
    expect(await ids_({ studyUid: study, status: 'error', limit: 50 })).toEqual([ids[5]]);
    expect(await ids_({ studyUid: study, positiveLabel: 'Mass', limit: 50 })).toEqual([ids[6], ids[4], ids[2], ids[0]]);
    expect(await ids_({ studyUid: study, positiveLabel: 'Hernia', status: 'ok', limit: 50 })).toEqual([ids[3], ids[1]]);
    expect(await ids_({ studyUid: study, positiveLabel: 'Pneumonia', limit: 50 })).toEqual([]);
    const exact = await repo.findings.list({ studyUid: study, limit: 7 });
    expect(exact.items).toHaveLength(7);
    expect(exact.next).toBeNull();
  });

  it('watch replays everything after a cursor, then streams new results as they are stored', async () => {
    const study = unique('watch');
    const first = await storeOne(repo, okEvent(`${study}-0`));
    if (first.kind !== 'stored') throw new Error('expected a new row');
    await storeOne(repo, okEvent(`${study}-1`));
    await storeOne(repo, errorEvent(`${study}-2`));

    const received: string[] = [];
    const seqs: bigint[] = [];
    const controller = new AbortController();
    const following = followFindings(
      repo.feed,
      first.record.seq,
      (record) => {
        received.push(record.event.id);
        seqs.push(record.seq);
      },
      { signal: controller.signal, pollMs: 60_000, batchSize: 2 },
    );
    await waitFor(() => received.length >= 2);
    expect(received).toEqual([`${study}-1`, `${study}-2`]);

    await storeOne(repo, okEvent(`${study}-3`));
    await storeOne(repo, okEvent(`${study}-3`)); // a redelivery is not streamed again
    await storeOne(repo, errorEvent(`${study}-4`));
    await waitFor(() => received.length >= 4);
    await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    await following;
    expect(received).toEqual([`${study}-1`, `${study}-2`, `${study}-3`, `${study}-4`]);
    expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  });

  it('refuses what PostgreSQL cannot store, as a permanent error of that event alone', async () => {
    const event = errorEvent(unique('img'), { message: 'nul \u0000 inside' });
    const outcome = await storeOne(repo, event);
    expect(outcome.kind).toBe('rejected');
    if (outcome.kind === 'rejected') expect(classifyStoreError(outcome.error)).toMatchObject({ code: 'INVALID_MESSAGE', transient: false });

    const study = unique('1.2.840.rejected');
    const good = [okEvent(`${study}-a`, { study: info(study, 'PA') }), okEvent(`${study}-b`, { study: info(study, 'AP') })];
    const outcomes = await repo.writer.store([good[0]!, errorEvent(`${study}-bad`, { study: info(study), message: '\u0000' }), good[1]!]);
    expect(outcomes.map((o) => o.kind)).toEqual(['stored', 'rejected', 'stored']);
    expect(await rowsOf(`${study}-bad`)).toBe(0);
    expect((await repo.studies.get({ studyUid: study }))?.result.contributingImages).toEqual([`${study}-a`, `${study}-b`]);
  });

  describe('batches', () => {
    it('stores a batch in one go, as if its events were stored one by one', async () => {
      const study = unique('1.2.840.batch');
      const other = unique('1.2.840.batch-other');
      const failed = errorEvent(`${study}-2`, { study: info(study) });
      const batch = [
        okEvent(`${study}-1`, { study: info(study, 'PA'), positives: ['Edema'] }),
        failed,
        okEvent(`${study}-1`, { study: info(study, 'PA'), positives: ['Edema'] }), // redelivered beside its original
        okEvent(`${study}-2`, { study: info(study, 'AP'), positives: ['Mass'] }), // supersedes the error
        okEvent(`${other}-1`, { study: info(other, 'PA') }),
        errorEvent(`${unique('img')}`, { study: {} }),
      ];
      const outcomes = await repo.writer.store(batch);
      expect(outcomes.map((o) => o.kind)).toEqual(['stored', 'stored', 'duplicate', 'stored', 'stored', 'stored']);
      // The ok result for image 2 has its own model version key beside the error's ('').
      expect(await rowsOf(`${study}-1`)).toBe(1);
      const seqs = outcomes.flatMap((o) => (o.kind === 'stored' || o.kind === 'replaced' ? [o.record.seq] : []));
      expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : 1)));
      const aggregate = await repo.studies.get({ studyUid: study });
      expect(aggregate).toMatchObject({ version: 1, result: { positives: ['Mass', 'Edema'], contributingImages: [`${study}-1`, `${study}-2`] } });
      const first = outcomes[0]!;
      expect(first.kind === 'stored' && first.study?.version).toBe(1);

      // The same batch again (a redelivery after a crash before the commit): nothing changes.
      expect((await repo.writer.store(batch)).map((o) => o.kind)).toEqual(Array(6).fill('duplicate'));
      expect(await repo.studies.get({ studyUid: study })).toEqual(aggregate);
    });

    it('different errors for one key in one batch: each replaces the one before, as one by one', async () => {
      const id = unique('img');
      const [a, b] = [errorEvent(id, { message: 'first' }), errorEvent(id, { message: 'second' })];
      const outcomes = await repo.writer.store([a, b, b, a]);
      expect(outcomes.map((o) => o.kind)).toEqual(['stored', 'replaced', 'duplicate', 'replaced']);
      expect(await rowsOf(id)).toBe(1);
      expect((await repo.findings.get(id))?.event.error?.message).toBe('first');
    });

    it('one event 100 times in one batch: one row, 99 duplicates', async () => {
      const study = unique('1.2.840.hundred');
      const event = okEvent(`${study}-img`, { study: info(study, 'PA') });
      const outcomes = await repo.writer.store(Array.from({ length: 100 }, () => event));
      expect(outcomes.filter((o) => o.kind === 'stored')).toHaveLength(1);
      expect(outcomes.filter((o) => o.kind === 'duplicate')).toHaveLength(99);
      expect(await rowsOf(event.id)).toBe(1);
      expect((await repo.studies.get({ studyUid: study }))?.version).toBe(1);
    });

    it('mixed model versions in one batch: a row per version, outcomes as stored, the study on the newest', async () => {
      const study = unique('1.2.840.versions');
      const [a, b] = [`${study}-a`, `${study}-b`];
      const batch = [
        okEvent(a, { study: info(study, 'PA'), version: 'v1', positives: ['Edema'] }),
        okEvent(b, { study: info(study, 'PA'), version: 'v1', positives: ['Mass'] }),
        okEvent(a, { study: info(study, 'PA'), version: 'v2', positives: ['Hernia'] }),
        okEvent(a, { study: info(study, 'PA'), version: 'v1', positives: ['Edema'] }), // beside its original
      ];
      const outcomes = await repo.writer.store(batch);
      expect(outcomes.map((o) => o.kind)).toEqual(['stored', 'stored', 'stored', 'duplicate']);
      expect(await rowsOf(a)).toBe(2);
      const aggregate = await repo.studies.get({ studyUid: study });
      // The newest ok result is v2: only image a has a v2 result, so only it contributes.
      expect(aggregate).toMatchObject({ version: 1, publishedVersion: 0, result: { positives: ['Hernia'], contributingImages: [a] } });
      for (const [i, [id, version]] of [[a, 'v1'], [b, 'v1'], [a, 'v2']].entries()) {
        const outcome = outcomes[i]!;
        if (outcome.kind !== 'stored') throw new Error(`outcome ${i}: ${outcome.kind}`);
        const stored = await repo.findings.get(id!, version);
        expect(outcome.record).toEqual({ seq: stored?.seq, event: batch[i], storedAt: stored?.storedAt });
        expect(outcome.study).toEqual(aggregate);
      }
      // The same batch replayed: nothing written, nothing changed.
      expect((await repo.writer.store(batch)).map((o) => o.kind)).toEqual(Array(4).fill('duplicate'));
      expect(await repo.studies.get({ studyUid: study })).toEqual(aggregate);
    });

    it('stores an event as it was received; the same event serialised otherwise is a duplicate', async () => {
      const study = unique('1.2.840.received');
      const event = okEvent(`${study}-img`, { study: info(study, 'PA'), probabilities: { Edema: 0.25 } });
      // As a producer may have written it: other spacing and number notation.
      const received = JSON.stringify(event, null, 2).replace('"probability": 0.25', '"probability": 2.50e-1');
      expect(received).toContain('2.50e-1');
      const [outcome] = await repo.writer.store([event], [received]);
      expect(outcome?.kind).toBe('stored');
      expect((await repo.findings.get(event.id))?.event).toEqual(event);
      expect((await repo.writer.store([event])).map((o) => o.kind)).toEqual(['duplicate']);
      expect((await repo.writer.store([event, event], [received, JSON.stringify(event)])).map((o) => o.kind)).toEqual(['duplicate', 'duplicate']);
      expect(await rowsOf(event.id)).toBe(1);
      expect((await repo.studies.get({ studyUid: study }))?.version).toBe(1);
    });

    it('concurrent batches that share studies neither deadlock nor lose an image of a study', async () => {
      const studies = Array.from({ length: 6 }, (_, i) => unique(`1.2.840.shared${i}`));
      const imagesOf = (worker: number) => studies.map((study) => okEvent(`${study}-w${worker}`, { study: info(study, 'PA') }));
      // Each batch names the shared studies in another order.
      await Promise.all([0, 1, 2, 3].map((w) => repo.writer.store(w % 2 ? imagesOf(w).reverse() : imagesOf(w))));
      for (const study of studies) {
        expect((await repo.studies.get({ studyUid: study }))?.result.contributingImages).toEqual([0, 1, 2, 3].map((w) => `${study}-w${w}`));
      }
    });
  });

  describe('study aggregates', () => {
    const studyRows = async (studyUid: string): Promise<number> =>
      Number((await db.query<{ n: string | number }>('SELECT count(*) AS n FROM study_results WHERE study_uid = $1', [studyUid]))[0]!.n);

    it('takes per label the maximum over frontal images and records which images contributed', async () => {
      const study = unique('1.2.840.study');
      const pa = okEvent(`${study}-pa`, { study: info(study, 'PA'), probabilities: { Cardiomegaly: 0.7, Effusion: 0.2, Hernia: 0.01 } });
      const ap = okEvent(`${study}-ap`, { study: info(study, 'AP'), probabilities: { Cardiomegaly: 0.4, Effusion: 0.9, Hernia: 0.02 } });
      const lateral = okEvent(`${study}-ll`, { study: info(study, 'LL'), probabilities: { Cardiomegaly: 0.99, Hernia: 0.97 } });
      const failed = errorEvent(`${study}-bad`, { study: info(study) });

      const first = await storeOne(repo, pa);
      expect(first.kind === 'stored' && first.study?.version).toBe(1);
      const second = await storeOne(repo, lateral);
      // A lateral image changes the study document (it is listed) but not its findings.
      expect(second.kind === 'stored' && second.study?.version).toBe(2);
      expect(second.kind === 'stored' && second.study?.result.findings).toEqual(first.kind === 'stored' && first.study?.result.findings);
      await storeOne(repo, ap);
      await storeOne(repo, failed);

      const stored = await repo.studies.get({ studyUid: study });
      expect(stored?.version).toBe(4);
      const result = stored!.result;
      expect(result).toMatchObject({ schema: 'thorax.study.v1', studyUid: study, accession: `${study}-ACC`, patientId: `${study}-PAT`, status: 'ok' });
      expect(result.model?.version).toBe('2026.11.30-1');
      expect(result.findings.map((f) => f.label)).toEqual(pa.findings.map((f) => f.label));
      const byLabel = Object.fromEntries(result.findings.map((f) => [f.label, f]));
      expect(byLabel['Cardiomegaly']).toEqual({ label: 'Cardiomegaly', probability: 0.7, threshold: 0.5, positive: true, imageId: `${study}-pa` });
      expect(byLabel['Effusion']).toEqual({ label: 'Effusion', probability: 0.9, threshold: 0.5, positive: true, imageId: `${study}-ap` });
      expect(byLabel['Hernia']).toMatchObject({ probability: 0.02, positive: false, imageId: `${study}-ap` });
      expect(result.positives).toEqual(['Cardiomegaly', 'Effusion']);
      expect(result.contributingImages).toEqual([`${study}-ap`, `${study}-pa`]);
      expect(result.images.map((i) => [i.id, i.contributed, i.excluded, i.errorCode])).toEqual([
        [`${study}-ap`, true, null, null],
        [`${study}-bad`, false, 'error', 'CORRUPT_IMAGE'],
        [`${study}-ll`, false, 'not-frontal', null],
        [`${study}-pa`, true, null, null],
      ]);
      expect(await studyRows(study)).toBe(1);
    });

    it('redelivering the same event 100 times leaves one row and one unchanged study aggregate', async () => {
      const study = unique('1.2.840.redelivery');
      const event = okEvent(`${study}-img`, { study: info(study, 'PA'), positives: ['Pneumothorax'] });
      const kinds: string[] = [];
      for (let i = 0; i < 100; i += 1) kinds.push((await storeOne(repo, event)).kind);
      expect(kinds.filter((k) => k === 'stored')).toHaveLength(1);
      expect(kinds.filter((k) => k === 'duplicate')).toHaveLength(99);
      expect(await rowsOf(event.id)).toBe(1);
      expect(await studyRows(study)).toBe(1);
      const stored = await repo.studies.get({ studyUid: study });
      expect(stored).toMatchObject({ version: 1 });
      expect(stored?.result.positives).toEqual(['Pneumothorax']);
    });

    it('concurrent deliveries: the same event once, every image of the study counted', async () => {
      const study = unique('1.2.840.concurrent');
      const event = okEvent(`${study}-same`, { study: info(study, 'PA') });
      const kinds = await Promise.all(Array.from({ length: 20 }, () => storeOne(repo, event).then((o) => o.kind)));
      expect(kinds.filter((k) => k !== 'duplicate')).toEqual(['stored']);
      const others = Array.from({ length: 10 }, (_, i) => okEvent(`${study}-img-${i}`, { study: info(study, 'AP') }));
      await Promise.all(others.map((e) => storeOne(repo, e)));
      const result = (await repo.studies.get({ studyUid: study }))!.result;
      expect(result.contributingImages).toHaveLength(11);
      expect(await rowsOf(event.id)).toBe(1);
      expect(await studyRows(study)).toBe(1);
    });

    it('falls back to images without a view, and follows the newest model version', async () => {
      const study = unique('1.2.840.views');
      await storeOne(repo, okEvent(`${study}-a`, { study: info(study), probabilities: { Mass: 0.6 } }));
      await storeOne(repo, okEvent(`${study}-b`, { study: info(study), probabilities: { Mass: 0.3 } }));
      let result = (await repo.studies.get({ studyUid: study }))!.result;
      expect(result.contributingImages).toEqual([`${study}-a`, `${study}-b`]);
      expect(result.findings.find((f) => f.label === 'Mass')).toMatchObject({ probability: 0.6, imageId: `${study}-a` });

      // A newer model analyses image b only: the study follows it, image a waits for that model.
      await storeOne(repo, okEvent(`${study}-b`, { version: '2027.01.01-1', study: info(study), probabilities: { Mass: 0.4 } }));
      result = (await repo.studies.get({ studyUid: study }))!.result;
      expect(result.model?.version).toBe('2027.01.01-1');
      expect(result.contributingImages).toEqual([`${study}-b`]);
      expect(result.images.find((i) => i.id === `${study}-a`)).toMatchObject({ contributed: false, excluded: 'other-model-version' });
      expect(result.findings.find((f) => f.label === 'Mass')).toMatchObject({ probability: 0.4, imageId: `${study}-b` });

      // Once any image is known to be frontal, images without a view no longer count.
      await storeOne(repo, okEvent(`${study}-c`, { version: '2027.01.01-1', study: info(study, 'PA'), probabilities: { Mass: 0.2 } }));
      result = (await repo.studies.get({ studyUid: study }))!.result;
      expect(result.contributingImages).toEqual([`${study}-c`]);
      expect(result.images.find((i) => i.id === `${study}-b`)).toMatchObject({ excluded: 'view-unknown' });
    });

    it('a study whose images all failed has an error aggregate without findings', async () => {
      const study = unique('1.2.840.failed');
      await storeOne(repo, errorEvent(`${study}-x`, { study: info(study) }));
      const stored = await repo.studies.get({ studyUid: study });
      expect(stored?.result).toMatchObject({ status: 'error', model: null, findings: [], positives: [], contributingImages: [] });
    });

    it('backfills aggregates of studies whose results predate the study table', async () => {
      const study = unique('1.2.840.backfill');
      await storeOne(repo, okEvent(`${study}-img`, { study: info(study, 'PA'), positives: ['Nodule'] }));
      await db.query('DELETE FROM study_results WHERE study_uid = $1', [study]);
      expect(await repo.studies.get({ studyUid: study })).toBeNull();
      expect(await backfillStudyAggregates(db)).toBeGreaterThanOrEqual(1);
      expect((await repo.studies.get({ studyUid: study }))?.result.positives).toEqual(['Nodule']);
      expect(await backfillStudyAggregates(db)).toBe(0);
    });

    it('finds studies by UID, resource id, accession, patient and model device, newest first', async () => {
      const tag = unique('1.2.840.find');
      const studies = [`${tag}.1`, `${tag}.2`, `${tag}.3`];
      for (const [i, study] of studies.entries()) {
        await storeOne(repo, okEvent(`${study}-img`, { study: { studyUid: study, accession: i < 2 ? `${tag}-A` : `${tag}-B`, patientId: `${tag}-P` } }));
      }
      const ids = async (query: Parameters<typeof repo.studies.list>[0]): Promise<string[]> =>
        (await repo.studies.list(query)).items.map((s) => s.result.studyUid);
      expect(await ids({ patientId: `${tag}-P`, limit: 10 })).toEqual([...studies].reverse());
      expect(await ids({ accession: `${tag}-A`, limit: 10 })).toEqual([studies[1], studies[0]]);
      const page = await repo.studies.list({ patientId: `${tag}-P`, limit: 2 });
      expect(page.items).toHaveLength(2);
      expect(await ids({ patientId: `${tag}-P`, limit: 2, before: page.next! })).toEqual([studies[0]]);

      const row = (await db.query<{ resource_id: string; device_id: string }>('SELECT resource_id, device_id FROM study_results WHERE study_uid = $1', [studies[0]]))[0]!;
      expect(row.resource_id).toMatch(/^[0-9a-f]{32}$/);
      expect((await repo.studies.get({ resourceId: row.resource_id }))?.result.studyUid).toBe(studies[0]);
      expect((await repo.studies.byDevice(row.device_id))?.result.model?.name).toBe('chexnet-densenet121');
      expect(await repo.studies.get({ resourceId: 'f'.repeat(32) })).toBeNull();
    });
  });

  it('filters results by completion time', async () => {
    const study = unique('time');
    const at = (iso: string) => okEvent(`${study}-${iso}`, { study: { studyUid: study }, receivedAt: new Date(iso) });
    for (const iso of ['2026-01-01T00:00:00.000Z', '2026-01-02T00:00:00.000Z', '2026-01-03T00:00:00.000Z']) await storeOne(repo, at(iso));
    const ids = async (from?: string, to?: string): Promise<string[]> =>
      (await repo.findings.list({ studyUid: study, limit: 10, ...(from ? { from: new Date(from) } : {}), ...(to ? { to: new Date(to) } : {}) })).items.map((r) => r.event.id.slice(study.length + 1, study.length + 11));
    // completedAt is receivedAt + 412 ms in the fixtures; `from` is inclusive, `to` exclusive.
    expect(await ids('2026-01-02T00:00:00.412Z')).toEqual(['2026-01-03', '2026-01-02']);
    expect(await ids(undefined, '2026-01-02T00:00:00.412Z')).toEqual(['2026-01-01']);
    expect(await ids('2026-01-01T12:00:00Z', '2026-01-02T12:00:00Z')).toEqual(['2026-01-02']);
  });

  it('reports the latest sequence', async () => {
    const outcome = await storeOne(repo, okEvent(unique('img')));
    expect(outcome.kind).toBe('stored');
    if (outcome.kind === 'stored') expect(await repo.feed.latestSeq()).toBe(outcome.record.seq);
  });
});

describe('upgrading a store from schema version 1', () => {
  it('adds the study tables and computes the aggregates of results already stored', async () => {
    const db = await PgliteSqlClient.open('memory://');
    try {
      expect(await migrate(db, MIGRATIONS.slice(0, 1))).toEqual([1]);
      // A result as version 1 stored it: the findings row alone.
      const old = okEvent('img-before-studies', { study: { studyUid: '1.2.840.old', viewPosition: 'PA' }, positives: ['Fibrosis'] });
      const insert = buildStoreBatchQuery([storeRow(old)]);
      await db.query(insert.text, insert.values);
      expect(await migrate(db)).toEqual(MIGRATIONS.slice(1).map((m) => m.version));
      const repo = sqlResultsStore(db);
      expect(await backfillStudyAggregates(db)).toBe(1);
      expect(await repo.studies.get({ studyUid: '1.2.840.old' })).toMatchObject({ version: 1, publishedVersion: 0, result: { positives: ['Fibrosis'] } });
    } finally {
      await db.close();
    }
  });
});

describe('PGlite on disk', () => {
  it('keeps results across restarts and does not re-run migrations', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'thorax-results-'));
    try {
      const first = await PgliteSqlClient.open(path.join(dir, 'data'));
      expect(await migrate(first)).toEqual(MIGRATIONS.map((m) => m.version));
      const event = okEvent('img-persisted');
      await sqlResultsStore(first).writer.store([event]);
      await first.close();

      const second = await PgliteSqlClient.open(path.join(dir, 'data'));
      expect(await migrate(second)).toEqual([]);
      expect((await sqlResultsStore(second).findings.get('img-persisted'))?.event).toEqual(event);
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
