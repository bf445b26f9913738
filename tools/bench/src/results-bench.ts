/**
 * The results stage against its ceiling, side by side in one run: the built results service
 * alone, working off N findings events into a fresh store (started on an empty topic; once it is
 * ready the events are published in one transaction, and the clock runs from that commit until
 * its group's committed offsets reach the end of the topic), against raw inserts of the very rows
 * it stored into the same store (same engine, same columns and indexes, same batch size, one
 * transaction per batch). The raw side inserts every row the service wrote: its findings_results rows and the
 * study_results rows of their studies (the aggregates, which are also the FHIR outbox: a study
 * row's version against its published_version; there are no other outbox rows). Embedded PGlite
 * on disk always; a PostgreSQL server too when DATABASE_URL is set (in a schema of its own,
 * dropped after).
 *
 *   npm run build && KAFKA_BROKERS=127.0.0.1:9092 node dist/tools/bench/src/results-bench.js
 *
 * Environment: KAFKA_BROKERS (required: the service consumes a topic), DATABASE_URL (optional),
 * RESULTS_BENCH_EVENTS (default 4000; BENCH_QUICK=1: 1000), RESULTS_BENCH_PORT (HTTP port of the
 * service, default BENCH_PORT_BASE + 50 or 24130; gRPC on the next one). A command that prints
 * figures, not a test; the last line is JSON ({engine, raw_inserts_per_s, results_per_s, ratio})
 * for scripts/bench.sh. The ratio is the goal (>= 0.8), not either rate. PGlite rounds also
 * print the CPU per event of both sides (docs/results.md).
 */
import { PGlite } from '@electric-sql/pglite';
import { CHESTXRAY14_LABELS, dlqTopic, encodeFindingsEvent, type FindingsEvent, okFindingsEvent } from '@thorax/contracts';
import { REPO_ROOT, startBuiltService } from '@thorax/testing';
import { type Admin, Kafka, logLevel, Partitioners } from 'kafkajs';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';

const env = process.env;
/** Given to the service explicitly for the PostgreSQL run only (it inherits this environment). */
const DATABASE_URL = env['DATABASE_URL'];
delete env['DATABASE_URL'];
const QUICK = env['BENCH_QUICK'] === '1';
const EVENTS = Number(env['RESULTS_BENCH_EVENTS'] ?? (QUICK ? 1000 : 4000));
/** Each round measures the service and then the raw inserts back to back, on a fresh store. */
const ROUNDS = Number(env['RESULTS_BENCH_ROUNDS'] ?? (QUICK ? 1 : 3));
/** The service's default RESULTS_BATCH_MAX_RECORDS: raw inserts go in batches of the same size. */
const BATCH = Number(env['RESULTS_BATCH_MAX_RECORDS'] ?? 500);
const HTTP_PORT = Number(env['RESULTS_BENCH_PORT'] ?? Number(env['BENCH_PORT_BASE'] ?? 24080) + 50);
const RUN = `rbench-${Date.now().toString(36)}`;
const LOG_DIR = path.join(REPO_ROOT, '.data', 'bench', RUN);

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** A pipeline-like mix: two views per study, 14 labels, a few positives. */
function events(n: number): FindingsEvent[] {
  const start = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const receivedAt = new Date(start + i);
    return okFindingsEvent({
      id: `${RUN}-img-${i}`,
      study: { studyUid: `1.2.826.0.1.3680043.8.498.${start}.${Math.floor(i / 2)}`, accession: `ACC-${Math.floor(i / 2)}`, patientId: `P-${i % 997}`, viewPosition: i % 2 ? 'LL' : 'PA' },
      receivedAt,
      completedAt: new Date(receivedAt.getTime() + 250),
      model: {
        name: 'thorax-tiny-cnn',
        version: 'bench-1',
        sha256: 'c'.repeat(64),
        provenance: { data: 'synthetic', clinical: false, dataset: null, note: 'Benchmark events.' },
      },
      labels: CHESTXRAY14_LABELS,
      thresholds: CHESTXRAY14_LABELS.map(() => 0.5),
      probabilities: CHESTXRAY14_LABELS.map((_, l) => ((i * 31 + l * 17) % 100) / 100),
    });
  });
}

// ---------------------------------------------------------------- the store, as the bench reaches it
interface Db {
  query(text: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  /** One transaction of the given statements on one connection. */
  batch(statements: { text: string; params: unknown[] }[]): Promise<void>;
  close(): Promise<void>;
}

async function pgliteDb(dir: string): Promise<Db> {
  const db = await PGlite.create(dir);
  return {
    query: async (text, params) => (await db.query<Record<string, unknown>>(text, params)).rows,
    batch: async (statements) => {
      await db.transaction(async (tx) => {
        for (const s of statements) await tx.query(s.text, s.params);
      });
    },
    close: () => db.close(),
  };
}

function pgDb(url: string): Db {
  const pool = new Pool({ connectionString: url, max: 2 });
  return {
    query: async (text, params) => (await pool.query(text, params)).rows as Record<string, unknown>[],
    batch: async (statements) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        for (const s of statements) await client.query(s.text, s.params);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}

// ---------------------------------------------------------------- (a) the results service alone
async function createTopics(kafka: Kafka, topic: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [topic, dlqTopic(topic)].map((t) => ({ topic: t, numPartitions: 3, replicationFactor: 1 })),
    });
  } finally {
    await admin.disconnect();
  }
}

/**
 * Publishes every event in one Kafka transaction: the service reads committed records only, so
 * all of them become visible to it at once, when the commit returns.
 */
async function publishAtOnce(kafka: Kafka, topic: string, all: FindingsEvent[]): Promise<void> {
  const values = all.map((e) => ({ key: e.id, value: encodeFindingsEvent(e) }));
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
    transactionalId: `${topic}-bench`,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  try {
    const transaction = await producer.transaction();
    try {
      for (let i = 0; i < values.length; i += 500) await transaction.send({ topic, acks: -1, messages: values.slice(i, i + 500) });
      await transaction.commit();
    } catch (error) {
      await transaction.abort().catch(() => undefined);
      throw error;
    }
  } finally {
    await producer.disconnect();
  }
}

/** The sum of a metric's samples whose line has every one of `parts`. */
async function metric(name: string, ...parts: string[]): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${HTTP_PORT}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) && parts.every((p) => line.includes(p)))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** Records of the topic the group has committed (the topic is fresh: offsets count from 0). */
async function committed(admin: Admin, groupId: string, topic: string): Promise<number> {
  const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
  return (offsets?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
}

/**
 * Events/s of the service working off N events, watched from the broker (the service is asked
 * nothing while it works). It starts on the empty topic; once it is ready and its consumer group
 * is Stable, the events are published in one transaction, and the clock runs from the commit
 * (when they all become visible to it) to the moment the group's committed offsets reach the end
 * of the topic (every event stored, its offset committed with it). Start-up is left out.
 */
async function resultsAlone(engine: string, storeEnv: Record<string, string>, all: FindingsEvent[]): Promise<Rate> {
  const kafka = new Kafka({ clientId: 'thorax-results-bench', brokers: (env['KAFKA_BROKERS'] ?? '').split(','), logLevel: logLevel.NOTHING });
  const topic = `thorax.findings.v1.${RUN}-${engine}`;
  const groupId = `${RUN}-${engine}`;
  await createTopics(kafka, topic);
  const admin = kafka.admin();
  await admin.connect();
  const service = startBuiltService(
    'results',
    {
      ...storeEnv,
      KAFKA_BROKERS: env['KAFKA_BROKERS'] ?? '',
      TOPIC_FINDINGS: topic,
      RESULTS_GROUP_ID: groupId,
      HTTP_PORT: String(HTTP_PORT),
      GRPC_PORT: String(HTTP_PORT + 1),
      LOG_LEVEL: 'warn',
    },
    path.join(LOG_DIR, engine),
  );
  try {
    const deadline = Date.now() + Math.max(300_000, all.length * 100);
    const alive = () => {
      if (service.process.exitCode !== null) throw new Error(`the results service exited (log: ${service.logFile})`);
      if (Date.now() > deadline) throw new Error(`results did not work off ${all.length} events in time (log: ${service.logFile})`);
    };
    const ready = async () => (await fetch(`http://127.0.0.1:${HTTP_PORT}/readyz`).catch(() => null))?.ok === true;
    const stable = async () => {
      const [group] = (await admin.describeGroups([groupId])).groups;
      return group?.state === 'Stable' && group.members.some((m) => m.memberAssignment.length > 0);
    };
    while (!((await ready()) && (await stable()))) {
      alive();
      await new Promise((r) => setTimeout(r, 100));
    }
    await publishAtOnce(kafka, topic, all);
    const start = performance.now();
    const cpuStart = processCpuMs(service.process.pid);
    for (;;) {
      alive();
      const n = await committed(admin, groupId, topic);
      if (n >= all.length) {
        const seconds = (performance.now() - start) / 1000;
        const cpuMs = processCpuMs(service.process.pid) - cpuStart;
        const stored = await metric('thorax_messages_total', `topic="${topic}"`, 'outcome="ok"');
        const stores = await metric('thorax_stage_duration_seconds_count', 'stage="persist"');
        const fetches = await metric('thorax_consumer_batch_size_count', `topic="${topic}"`);
        if (stored < all.length) throw new Error(`offsets committed past ${all.length} events but ${stored} stored (log: ${service.logFile})`);
        say(`  ${engine}: ${all.length} events in ${seconds.toFixed(2)} s; ${stores} store transactions (${(all.length / stores).toFixed(0)} events each); ${fetches} partition fetches`);
        return { perSecond: all.length / seconds, cpuMsPerEvent: cpuMs / all.length };
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    await service.stop();
    await admin.disconnect();
  }
}

/** An events/s figure and the CPU per event of the process that did the work. */
interface Rate {
  perSecond: number;
  cpuMsPerEvent: number;
}

/** User + system CPU of a process so far, in ms (Linux /proc; clock ticks of 10 ms). */
function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

// ---------------------------------------------------------------- (b) raw inserts of the same rows
const FINDINGS_COLUMNS = [
  'image_id', 'model_version', 'status', 'model_name', 'study_uid', 'accession',
  'error_code', 'error_stage', 'positives', 'received_at', 'completed_at', 'event',
] as const;
const STUDY_COLUMNS = ['study_uid', 'resource_id', 'status', 'accession', 'patient_id', 'device_id', 'positives', 'result'] as const;

/** The rows the service stored, in its order, as the bench will insert them again. */
async function storedRows(db: Db): Promise<{ findings: unknown[][]; studies: Map<string, unknown[]> }> {
  const findings = (await db.query(`SELECT ${FINDINGS_COLUMNS.join(', ')} FROM findings_results ORDER BY seq`)).map((row) =>
    FINDINGS_COLUMNS.map((c) => (c === 'event' ? JSON.stringify(row[c]) : row[c] instanceof Date ? (row[c] as Date).toISOString() : row[c])),
  );
  const studies = new Map(
    (await db.query(`SELECT ${STUDY_COLUMNS.join(', ')} FROM study_results`)).map((row) => [
      row['study_uid'] as string,
      STUDY_COLUMNS.map((c) => (c === 'result' ? JSON.stringify(row[c]) : row[c])),
    ]),
  );
  return { findings, studies };
}

function valuesInsert(table: string, columns: readonly string[], casts: Record<string, string>, rows: unknown[][]): { text: string; params: unknown[] } {
  const params: unknown[] = [];
  const tuples = rows.map((row) => `(${row.map((value, i) => {
    params.push(value);
    return `$${params.length}${casts[columns[i] as string] ?? ''}`;
  }).join(', ')})`);
  return { text: `INSERT INTO ${table} (${columns.join(', ')}) VALUES ${tuples.join(', ')}`, params };
}

const CASTS = { positives: '::text[]', received_at: '::timestamptz', completed_at: '::timestamptz', event: '::jsonb', result: '::jsonb' };
const TYPES: Record<string, string> = { positives: 'text[]', received_at: 'timestamptz', completed_at: 'timestamptz', event: 'jsonb', result: 'jsonb' };

/** All rows as one JSON parameter (what the service's upsert reads; no conflict handling here). */
function recordsetInsert(table: string, columns: readonly string[], rows: unknown[][]): { text: string; params: unknown[] } {
  const objects = rows.map((row) => Object.fromEntries(columns.map((c, i) => [c, c === 'event' || c === 'result' ? JSON.parse(row[i] as string) : row[i]])));
  const defs = columns.map((c) => `${c} ${TYPES[c] ?? 'text'}`).join(', ');
  return {
    text: `INSERT INTO ${table} (${columns.join(', ')}) SELECT ${columns.join(', ')} FROM jsonb_to_recordset($1::text::jsonb) AS x (${defs})`,
    params: [JSON.stringify(objects)],
  };
}

type InsertStyle = 'values' | 'recordset';

/**
 * Inserts the service's rows again into copies of its tables (LIKE … INCLUDING ALL: same
 * columns, defaults and indexes), a batch of BATCH events per transaction: its findings rows and
 * the study rows of its studies, either as multi-row INSERT … VALUES or as one JSON parameter.
 * Statements are built before the clock starts. Events/s.
 */
async function rawInserts(db: Db, style: InsertStyle): Promise<Rate> {
  const { findings, studies } = await storedRows(db);
  await db.query('DROP TABLE IF EXISTS bench_raw_findings, bench_raw_studies');
  await db.query('CREATE TABLE bench_raw_findings (LIKE findings_results INCLUDING ALL)');
  await db.query('CREATE TABLE bench_raw_studies (LIKE study_results INCLUDING ALL)');
  const insert = (table: string, columns: readonly string[], rows: unknown[][]) =>
    style === 'values' ? valuesInsert(table, columns, CASTS, rows) : recordsetInsert(table, columns, rows);
  const studyColumn = FINDINGS_COLUMNS.indexOf('study_uid');
  const batches: { text: string; params: unknown[] }[][] = [];
  for (let i = 0; i < findings.length; i += BATCH) {
    const rows = findings.slice(i, i + BATCH);
    const studyRows = [...new Set(rows.map((r) => r[studyColumn] as string))].flatMap((uid) => {
      const row = studies.get(uid);
      studies.delete(uid); // a study spanning two batches is inserted once
      return row ? [row] : [];
    });
    batches.push([
      insert('bench_raw_findings', FINDINGS_COLUMNS, rows),
      ...(studyRows.length > 0 ? [insert('bench_raw_studies', STUDY_COLUMNS, studyRows)] : []),
    ]);
  }
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (const batch of batches) await db.batch(batch);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await db.query('DROP TABLE bench_raw_findings, bench_raw_studies');
  return { perSecond: findings.length / seconds, cpuMsPerEvent: (cpu.user + cpu.system) / 1000 / findings.length };
}

/** The faster of the two plain ways to insert the rows: the ceiling. */
async function ceiling(db: Db): Promise<Pick<Figures, 'raw' | 'rawValues' | 'rawRecordset' | 'rawCpu'>> {
  const values = await rawInserts(db, 'values');
  const recordset = await rawInserts(db, 'recordset');
  const faster = values.perSecond > recordset.perSecond ? values : recordset;
  return { raw: faster.perSecond, rawValues: values.perSecond, rawRecordset: recordset.perSecond, rawCpu: faster.cpuMsPerEvent };
}

// ---------------------------------------------------------------- one engine
interface Figures {
  engine: string;
  events: number;
  results: number;
  /** The ceiling: the faster of rawValues and rawRecordset. */
  raw: number;
  rawValues: number;
  rawRecordset: number;
  /**
   * CPU ms per event of the service's process and of the faster raw side's (this process). With
   * PGlite each process does all of its side's work, so their ratio is the same comparison by
   * CPU, steadier than the rates on a shared machine; with a server most of the work is the
   * server's, so they are not compared.
   */
  resultsCpu: number;
  rawCpu: number;
}

async function pgliteRound(all: FindingsEvent[], round: number): Promise<Figures> {
  const dir = mkdtempSync(path.join(tmpdir(), 'thorax-results-bench-'));
  try {
    const { perSecond: results, cpuMsPerEvent: resultsCpu } = await resultsAlone(`pglite-${round}`, { RESULTS_DATA_DIR: dir }, all);
    const db = await pgliteDb(dir);
    try {
      return { engine: 'pglite', events: all.length, results, resultsCpu, ...(await ceiling(db)) };
    } finally {
      await db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function postgresRound(url: string, all: FindingsEvent[], round: number): Promise<Figures> {
  const schema = `${RUN.replace(/-/g, '_')}_${round}`;
  const admin = pgDb(url);
  await admin.query(`CREATE SCHEMA ${schema}`);
  const scoped = new URL(url);
  scoped.searchParams.set('options', `-c search_path=${schema}`);
  try {
    const { perSecond: results, cpuMsPerEvent: resultsCpu } = await resultsAlone(`postgres-${round}`, { DATABASE_URL: scoped.toString() }, all);
    const db = pgDb(scoped.toString());
    try {
      return { engine: 'postgres', events: all.length, results, resultsCpu, ...(await ceiling(db)) };
    } finally {
      await db.close();
    }
  } finally {
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.close();
  }
}

/** ROUNDS rounds of one engine: the round with the median ratio (the machine may be shared). */
async function engine(round: (r: number) => Promise<Figures>): Promise<Figures> {
  const rounds: Figures[] = [];
  for (let r = 0; r < ROUNDS; r += 1) {
    const f = await round(r);
    const cpu = f.engine === 'pglite' ? `; CPU per event: results ${f.resultsCpu.toFixed(3)} ms, raw ${f.rawCpu.toFixed(3)} ms, ratio ${(f.rawCpu / f.resultsCpu).toFixed(2)}` : '';
    say(`  ${f.engine} round ${r + 1}/${ROUNDS}: results ${f.results.toFixed(0)}, raw ${f.raw.toFixed(0)} events/s, ratio ${(f.results / f.raw).toFixed(2)}${cpu}`);
    rounds.push(f);
  }
  rounds.sort((a, b) => a.results / a.raw - b.results / b.raw);
  return rounds[Math.floor(rounds.length / 2)] as Figures;
}

async function main(): Promise<void> {
  if (!env['KAFKA_BROKERS']) throw new Error('KAFKA_BROKERS is not set: the results service consumes a topic (scripts/kafka.sh start)');
  const all = events(EVENTS);
  say(`results bench: ${EVENTS} findings events (2 images per study), batches of ${BATCH}, ${ROUNDS} round(s) per engine; logs in ${LOG_DIR}`);
  const figures: Figures[] = [await engine((r) => pgliteRound(all, r))];
  if (DATABASE_URL) figures.push(await engine((r) => postgresRound(DATABASE_URL, all, r)));
  say('median round per engine:');
  say('engine     results alone   raw: VALUES   raw: JSON recordset   ratio to the faster raw (goal >= 0.8)   [events/s]   CPU ratio');
  for (const f of figures) {
    const cpu = f.engine === 'pglite' ? (f.rawCpu / f.resultsCpu).toFixed(2) : '-';
    say(
      `${f.engine.padEnd(10)} ${f.results.toFixed(0).padStart(13)}   ${f.rawValues.toFixed(0).padStart(11)}   ${f.rawRecordset.toFixed(0).padStart(19)}   ${(f.results / f.raw).toFixed(2).padStart(38)}   ${cpu.padStart(22)}`,
    );
  }
  // The engine the service uses with this environment (a server when DATABASE_URL is set).
  const main = figures.at(-1) as Figures;
  say(JSON.stringify({ engine: main.engine, events: main.events, raw_inserts_per_s: Math.round(main.raw), results_per_s: Math.round(main.results), ratio: Number((main.results / main.raw).toFixed(3)) }));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`results bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
