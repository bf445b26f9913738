import type { FindingsEvent } from '@thorax/contracts';
import { aggregateStudy, type StudyResult, type StudyRow as AggregateInput } from '../domain/study-aggregate';
import { buildStoreBatchQuery, storeRow, type StoreRow, type WrittenRow, type WrittenRows } from './findings.sql';
import type { FindingsWriter, StoredFindings, StoredStudy, StoreOutcome } from './results-store.port';
import type { SqlClient, SqlExecutor } from './sql-client';
import { run, toDate, toStored } from './sql-rows';
import {
  buildStudiesWithoutAggregateQuery,
  buildStudyLockQuery,
  buildStudyRowsQuery,
  buildStudyUpsertQuery,
  type StudyResultRow,
  type WrittenStudies,
  type WrittenStudy,
} from './studies.sql';
import { storeFailureOf } from './store-errors';
import type { StoredSignal } from './stored-signal';

/**
 * Stores findings in batches on any PostgreSQL-dialect engine (PGlite or a server): per batch one
 * transaction of a handful of statements whatever its size (lock the studies, one multi-row
 * upsert, read the changed studies' other results, one multi-row upsert of their aggregates).
 * The upserts hand back what they wrote as one row each. On PGlite the studies are not locked:
 * one process owns the data directory and runs its transactions one at a time, so no other
 * writer can store an image of the same study meanwhile.
 */
export class SqlFindingsWriter implements FindingsWriter {
  constructor(
    private readonly db: SqlClient,
    private readonly signal: StoredSignal,
  ) {}

  async store(events: readonly FindingsEvent[], eventJson: readonly (string | undefined)[] = []): Promise<StoreOutcome[]> {
    if (events.length === 0) return [];
    let outcomes: StoreOutcome[];
    const lockStudies = this.db.engine !== 'pglite';
    try {
      outcomes = await this.db.transaction((tx) => writeBatch(tx, events, eventJson, lockStudies));
    } catch (error) {
      if (storeFailureOf(error) !== 'rejected') throw error;
      if (events.length === 1) return [{ kind: 'rejected', error }];
      // One event the database refuses fails the statement of the whole batch: store each
      // alone, in order, so that only it is refused.
      outcomes = [];
      for (const [i, event] of events.entries()) outcomes.push(...(await this.store([event], [eventJson[i]])));
      return outcomes;
    }
    if (outcomes.some((o) => o.kind === 'stored' || o.kind === 'replaced')) this.signal.notify();
    return outcomes;
  }
}

const keyOf = (id: string, modelVersion: string): string => `${modelVersion}\u0000${id}`;

async function writeBatch(
  tx: SqlExecutor,
  events: readonly FindingsEvent[],
  eventJson: readonly (string | undefined)[],
  lockStudies: boolean,
): Promise<StoreOutcome[]> {
  const rows = events.map(storeRow);
  // Lock the studies first: their aggregates below must see every other committed image of them.
  const studyUids = distinct(rows.map((r) => r.study_uid));
  if (lockStudies && studyUids.length > 0) await run(tx, buildStudyLockQuery(studyUids));

  const outcomes: StoreOutcome[] = rows.map(() => ({ kind: 'duplicate' }));
  for (const round of rounds(rows)) {
    const query = buildStoreBatchQuery(
      round.map((i) => rows[i] as StoreRow),
      round.map((i) => eventJson[i]),
    );
    const [result] = await run<WrittenRows>(tx, query);
    if (!result) throw new Error('the findings upsert returned no row');
    const storedAt = toDate(result.stored_at);
    const byKey = new Map((JSON.parse(result.written) as WrittenRow[]).map((w) => [keyOf(w[0], w[1]), w]));
    for (const i of round) {
      const row = rows[i] as StoreRow;
      const w = byKey.get(keyOf(row.image_id, row.model_version));
      if (!w) continue;
      outcomes[i] = { kind: w[3] ? 'stored' : 'replaced', record: { seq: BigInt(w[2]), event: row.event, storedAt }, study: null };
    }
  }

  const changed = distinct(rows.filter((_, i) => outcomes[i]?.kind !== 'duplicate').map((r) => r.study_uid));
  if (changed.length > 0) {
    const written = outcomes.flatMap((o) => (o.kind === 'stored' || o.kind === 'replaced' ? [o.record] : []));
    const studies = await aggregate(tx, changed, written);
    rows.forEach((row, i) => {
      const outcome = outcomes[i];
      if (row.study_uid && (outcome?.kind === 'stored' || outcome?.kind === 'replaced')) outcome.study = studies.get(row.study_uid) ?? null;
    });
  }
  return outcomes;
}

/**
 * Splits a batch into rounds of distinct keys, in order (one upsert statement each): the first
 * occurrence of every key, then the second, … so that a key given twice in one batch is stored
 * as if one event after the other. An event that cannot change the row its predecessor in the
 * batch left is no round of its own (a duplicate): the same event again (a redelivery beside its
 * original), or anything after an ok result (an ok row is never overwritten).
 */
function rounds(rows: readonly StoreRow[]): number[][] {
  const keys = rows.map((row) => keyOf(row.image_id, row.model_version));
  const occurrences = new Map<string, number>();
  for (const key of keys) occurrences.set(key, (occurrences.get(key) ?? 0) + 1);
  const out: number[][] = [];
  const last = new Map<string, { round: number; status: string; json: string }>();
  keys.forEach((key, i) => {
    const row = rows[i] as StoreRow;
    if (occurrences.get(key) === 1) {
      (out[0] ??= []).push(i);
      return;
    }
    const json = JSON.stringify(row.event);
    const before = last.get(key);
    if (before && (before.status === 'ok' || before.json === json)) return;
    const round = before ? before.round + 1 : 0;
    last.set(key, { round, status: row.status, json });
    (out[round] ??= []).push(i);
  });
  return out;
}

function distinct(values: readonly (string | null)[]): string[] {
  return [...new Set(values.filter((v): v is string => !!v))];
}

/**
 * Recomputes the studies' aggregates from their stored results; returns those that changed.
 * `written` are rows this transaction wrote: taken as they are, not read back.
 */
async function aggregate(tx: SqlExecutor, studyUids: readonly string[], written: readonly StoredFindings[] = []): Promise<Map<string, StoredStudy>> {
  const inputs = new Map<string, AggregateInput[]>(studyUids.map((uid) => [uid, []]));
  for (const row of await run<StudyResultRow>(tx, buildStudyRowsQuery(studyUids, written.map((w) => w.seq)))) {
    inputs.get(row.study_uid)?.push(toStored(row));
  }
  for (const row of written) if (row.event.study.studyUid) inputs.get(row.event.study.studyUid)?.push(row);
  const results = new Map(
    studyUids.map((uid) => [uid, aggregateStudy(uid, (inputs.get(uid) ?? []).sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0)))]),
  );
  const [row] = await run<WrittenStudies>(tx, buildStudyUpsertQuery([...results.values()]));
  if (!row) throw new Error('the study upsert returned no row');
  const updatedAt = toDate(row.updated_at);
  return new Map(
    (JSON.parse(row.written) as WrittenStudy[]).map(([uid, seq, version, publishedVersion]) => [
      uid,
      { seq: BigInt(seq), version: Number(version), publishedVersion: Number(publishedVersion), updatedAt, result: results.get(uid) as StudyResult },
    ]),
  );
}

/**
 * Computes the aggregate of every study that has results but no aggregate yet: results stored
 * before the study table existed (a store upgraded from schema version 1). Returns how many.
 */
export async function backfillStudyAggregates(db: SqlClient, chunk = 500): Promise<number> {
  const missing = (await run<{ study_uid: string }>(db, buildStudiesWithoutAggregateQuery())).map((r) => r.study_uid);
  for (let start = 0; start < missing.length; start += chunk) {
    const uids = missing.slice(start, start + chunk);
    await db.transaction(async (tx) => {
      await run(tx, buildStudyLockQuery(uids));
      await aggregate(tx, uids);
    });
  }
  return missing.length;
}
