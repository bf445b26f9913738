/**
 * FHIR bundles on the FHIR topic exactly once per (Study Instance UID, study version), under
 * KAFKA_DELIVERY=exactly-once, with the built results service (dist/) against a real broker and
 * a real PostgreSQL server (DATABASE_URL; a database of its own per run, dropped afterwards):
 *
 * 1. results is killed (SIGKILL) in the window between the Kafka commit of its bundles and the
 *    store's mark. The window is held open without any hook in the service: the test holds
 *    a SHARE lock on study_results, which lets the relay read and publish but blocks its UPDATE,
 *    waits until a read_committed consumer sees the bundles, kills results, ends the killed
 *    process's database backends (so its blocked mark never lands) and releases the lock. The
 *    restarted service must reconcile those versions from the topic instead of publishing again.
 * 2. Two replicas under a stream of findings, killed (SIGKILL) at random points and restarted,
 *    and once the owner frozen (SIGSTOP) and cut off from the database until the other replica
 *    has taken over and fenced it, then resumed: every (study, version) on the topic once, every
 *    study's last version there, versions rising per study.
 *
 * Topics (findings and FHIR) are created per run, so nothing else publishes to them.
 */
import { CHESTXRAY14_LABELS, encodeFindingsEvent, type FindingsEvent, okFindingsEvent } from '@thorax/contracts';
import { collect, type PlainRecord, REPO_ROOT, produce, type RunningService, startBuiltService, testBrokers, testKafka, waitForService } from '@thorax/testing';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';

jest.setTimeout(600_000);

const RUN = `fhir-eo-${Date.now().toString(36)}`;
const BASE = Number(process.env['THORAX_E2E_PORT_BASE'] ?? 18080);
/** HTTP ports BASE+70…+79, gRPC BASE+80…+89: one pair per replica slot. */
const slotPorts = (slot: number) => ({ http: BASE + 70 + slot, grpc: BASE + 80 + slot });
const FINDINGS_TOPIC = `e2e.findings.${RUN}`;
const FHIR_TOPIC = `e2e.fhir.${RUN}`;
const kafka = testKafka('thorax-e2e-fhir-exactly-once');
const LOGS = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
const DATABASE = `thorax_${RUN.replace(/-/g, '_')}`;
const say = (text: string) => process.stdout.write(`[fhir-exactly-once] ${text}\n`);

function databaseUrl(): string {
  const url = process.env['DATABASE_URL'];
  if (!url) throw new Error('DATABASE_URL is not set: run the suite through `npm test`, which starts PostgreSQL (several replicas share one server)');
  return url;
}

function urlOf(database: string): string {
  const url = new URL(databaseUrl());
  url.pathname = `/${database}`;
  return url.toString();
}

interface Replica {
  slot: number;
  group: string;
  service: RunningService;
}

let starts = 0;

async function startReplica(slot: number, group: string, settleMs: number): Promise<Replica> {
  const { http, grpc } = slotPorts(slot);
  starts += 1;
  const service = startBuiltService(
    'results',
    {
      KAFKA_BROKERS: testBrokers().join(','),
      KAFKA_DELIVERY: 'exactly-once',
      LOG_LEVEL: 'info',
      HTTP_PORT: String(http),
      GRPC_PORT: String(grpc),
      RESULTS_GROUP_ID: group,
      DATABASE_URL: urlOf(DATABASE),
      RESULTS_DB_POOL_SIZE: '4',
      TOPIC_FINDINGS: FINDINGS_TOPIC,
      RESULTS_FHIR_TOPIC: FHIR_TOPIC,
      RESULTS_STUDY_SETTLE_MS: String(settleMs),
    },
    path.join(LOGS, `slot-${slot}-start-${starts}`),
  );
  await waitForService(service, `http://127.0.0.1:${http}/readyz`, 120_000);
  return { slot, group, service };
}

async function kill(replica: Replica): Promise<void> {
  const child = replica.service.process;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

async function metric(replica: Replica, name: string, labels = ''): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${slotPorts(replica.slot).http}/metrics`);
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function pending(db: Client): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM study_results WHERE published_version < version');
  return Number(rows[0]?.n ?? 0);
}

/** Terminates the database backends of this run's database whose application name is LIKE `pattern`; returns how many. */
async function endBackends(observer: Client, pattern: string): Promise<number> {
  // Chosen first, terminated after: in one WHERE clause the server may call the function before the filters.
  const { rows } = await observer.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE $1 AND pid <> pg_backend_pid()',
    [pattern],
  );
  for (const { pid } of rows) await observer.query('SELECT pg_terminate_backend($1)', [pid]);
  return rows.length;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Until the group has committed everything published to the findings topic so far. */
async function consumed(group: string, timeoutMs = 120_000): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await until(
      `group ${group} to catch up with ${FINDINGS_TOPIC}`,
      async () => {
        const ends = await admin.fetchTopicOffsets(FINDINGS_TOPIC);
        const [committed] = await admin.fetchOffsets({ groupId: group, topics: [FINDINGS_TOPIC] });
        const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
        return ends.every((e) => e.high === e.low || (at.get(e.partition) ?? -1n) >= BigInt(e.high));
      },
      timeoutMs,
    );
  } finally {
    await admin.disconnect();
  }
}

function finding(study: string, image: number): FindingsEvent {
  const receivedAt = new Date();
  return okFindingsEvent({
    id: `${study}-img-${image}`,
    study: { studyUid: study, accession: `ACC-${study.split('.').at(-1)}`, viewPosition: image % 2 === 0 ? 'PA' : 'AP' },
    receivedAt,
    completedAt: new Date(receivedAt.getTime() + 200),
    model: {
      name: 'thorax-tiny-cnn',
      version: '2026.11.30-1',
      sha256: 'c'.repeat(64),
      provenance: { data: 'synthetic', clinical: false, dataset: null, note: 'Demonstration model trained on synthetic images; not for clinical use.' },
    },
    labels: CHESTXRAY14_LABELS,
    thresholds: CHESTXRAY14_LABELS.map(() => 0.5),
    // Each image changes the aggregate (a higher maximum), so each stored image is a new version.
    probabilities: CHESTXRAY14_LABELS.map((_, i) => Math.min(0.99, 0.1 + 0.1 * image + 0.01 * i)),
  });
}

/** Publishes findings events as inference would, retrying while a broker is away (a repeat is a redelivery to results). */
async function publish(events: FindingsEvent[]): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await produce(kafka, FINDINGS_TOPIC, events.map((e) => ({ key: e.id, value: encodeFindingsEvent(e) })));
    } catch (error) {
      if (attempt >= 20) throw error;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Bundles per (study, version) among the records of the given studies. */
function countVersions(records: PlainRecord[], studies: Set<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of records) {
    if (r.key === null || !studies.has(r.key)) continue;
    const id = `${r.key}@${r.headers['thorax-fhir-version']}`;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

async function storedVersions(db: Client, studies: Set<string>): Promise<Map<string, number>> {
  const { rows } = await db.query<{ study_uid: string; version: number }>('SELECT study_uid, version FROM study_results WHERE study_uid = ANY($1::text[])', [[...studies]]);
  return new Map(rows.map((r) => [r.study_uid, Number(r.version)]));
}

/** Reads the FHIR topic read_committed until every study's stored version is there, and quiet. */
async function bundlesFor(stored: Map<string, number>): Promise<PlainRecord[]> {
  return collect(
    kafka,
    FHIR_TOPIC,
    (records) => {
      const seen = new Set(records.map((r) => `${r.key}@${r.headers['thorax-fhir-version']}`));
      return [...stored].every(([study, version]) => seen.has(`${study}@${version}`));
    },
    120_000,
    { quietMs: 5000 },
  );
}

/** Every (study, version) at most once, the stored version of each study present, versions rising per key. */
function verdict(records: PlainRecord[], stored: Map<string, number>) {
  const studies = new Set(stored.keys());
  const counts = countVersions(records, studies);
  const duplicates = [...counts].filter(([, n]) => n > 1);
  const lost = [...stored].filter(([study, version]) => !counts.has(`${study}@${version}`));
  const last = new Map<string, number>();
  let outOfOrder = 0;
  for (const r of records) {
    if (r.key === null || !studies.has(r.key)) continue;
    const version = Number(r.headers['thorax-fhir-version']);
    if (version <= (last.get(r.key) ?? 0)) outOfOrder += 1;
    last.set(r.key, version);
  }
  const bundles = [...counts.values()].reduce((a, b) => a + b, 0);
  return { bundles, distinct: counts.size, duplicates, lost, outOfOrder };
}

let admin: Client;
let db: Client;

beforeAll(async () => {
  admin = new Client({ connectionString: databaseUrl() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${DATABASE}`);
  db = new Client({ connectionString: urlOf(DATABASE), application_name: 'thorax-e2e-observer' });
  await db.connect();
  const kafkaAdmin = kafka.admin();
  await kafkaAdmin.connect();
  try {
    // Replicated as in production on a cluster of three or more brokers (a broker may be killed there).
    const replicated = (await kafkaAdmin.describeCluster()).brokers.length >= 3;
    const replication = replicated
      ? { replicationFactor: 3, configEntries: [{ name: 'min.insync.replicas', value: '2' }] }
      : { replicationFactor: 1 };
    await kafkaAdmin.createTopics({
      // Waited for below: on a cluster, kafkajs's own wait can ask a broker that has not heard of them yet.
      waitForLeaders: false,
      topics: [
        { topic: FINDINGS_TOPIC, numPartitions: 6, ...replication },
        { topic: `${FINDINGS_TOPIC}.dlq`, numPartitions: 1, ...replication },
        { topic: FHIR_TOPIC, numPartitions: 3, ...replication },
      ],
    });
    await until(
      'the topics to have leaders',
      async () => {
        try {
          const { topics } = await kafkaAdmin.fetchTopicMetadata({ topics: [FINDINGS_TOPIC, `${FINDINGS_TOPIC}.dlq`, FHIR_TOPIC] });
          return topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0));
        } catch {
          return false;
        }
      },
      60_000,
    );
  } finally {
    await kafkaAdmin.disconnect();
  }
});

afterAll(async () => {
  await db?.end().catch(() => undefined);
  if (admin) {
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`).catch(() => undefined);
    await admin.end().catch(() => undefined);
  }
  const kafkaAdmin = kafka.admin();
  await kafkaAdmin.connect();
  await kafkaAdmin.deleteTopics({ topics: [FINDINGS_TOPIC, `${FINDINGS_TOPIC}.dlq`, FHIR_TOPIC] }).catch(() => undefined);
  await kafkaAdmin.disconnect();
});

describe('FHIR topic exactly once (KAFKA_DELIVERY=exactly-once, PostgreSQL)', () => {
  it('a kill -9 between the Kafka commit and the store mark: the next owner reconciles, nothing is published twice', async () => {
    const group = `thorax-results-${RUN}-a`;
    const studies = Array.from({ length: 20 }, (_, i) => `1.2.826.0.1.3680043.8.498.${Date.now()}.1${i}`);
    const studySet = new Set(studies);
    // A 10 s settle time: room to take the lock after the third images are stored and before they go out.
    let replica = await startReplica(0, group, 10_000);
    try {
      await publish(studies.flatMap((s) => [finding(s, 1), finding(s, 2)]));
      await consumed(group);
      await until('the first versions to be published', async () => (await pending(db)) === 0, 120_000);

      await publish(studies.map((s) => finding(s, 3)));
      await consumed(group);
      expect(await pending(db)).toBe(20);
      const lock = new Client({ connectionString: urlOf(DATABASE), application_name: 'thorax-e2e-lock' });
      await lock.connect();
      await lock.query('BEGIN');
      // Reads (and so the relay's queries and Kafka transaction) go on; UPDATEs wait.
      await lock.query('LOCK TABLE study_results IN SHARE MODE');
      const stored = await storedVersions(db, studySet);
      const committed = await bundlesFor(stored);
      // Committed on the topic, not marked in the store: the window.
      const pendingAtKill = await pending(db);
      expect(pendingAtKill).toBe(20);
      const before = verdict(committed, stored);
      expect(before.duplicates).toEqual([]);
      expect(before.lost).toEqual([]);

      await kill(replica);
      // The killed process's blocked UPDATE must not complete once the lock goes: end its backends.
      const ended = await endBackends(db, 'thorax-results%');
      await lock.query('ROLLBACK');
      await lock.end();
      expect(await pending(db)).toBe(20);

      replica = await startReplica(0, group, 10_000);
      await until('the restarted replica to reconcile', async () => (await pending(db)) === 0, 120_000);
      const reconciled = await metric(replica, 'thorax_fhir_bundles_total', 'outcome="reconciled"');
      const published = await metric(replica, 'thorax_fhir_bundles_total', 'outcome="published"');
      const after = verdict(await bundlesFor(stored), stored);
      say(
        [
          'FHIR topic, kill -9 between Kafka commit and store mark (PostgreSQL, exactly-once):',
          `  studies ${studies.length}; at the kill: bundles on the topic ${before.bundles}, committed versions not marked in the store ${pendingAtKill}`,
          `  backends of the killed process ended ${ended}`,
          `  restarted replica: reconciled ${reconciled}, published ${published}`,
          `  bundles on the topic ${after.bundles} for ${after.distinct} (study, version): duplicates ${after.duplicates.length}, lost ${after.lost.length}, out of order ${after.outOfOrder}`,
        ].join('\n'),
      );
      expect(reconciled).toBe(20);
      expect(published).toBe(0);
      expect(after.duplicates).toEqual([]);
      expect(after.lost).toEqual([]);
      expect(after.outOfOrder).toBe(0);
      expect(after.bundles).toBe(before.bundles);
    } finally {
      await kill(replica);
    }
  });

  it('two replicas killed at random points under load: every (study, version) once, none lost', async () => {
    const group = `thorax-results-${RUN}-b`;
    const STUDIES = 100;
    const IMAGES = 5;
    const studies = Array.from({ length: STUDIES }, (_, i) => `1.2.826.0.1.3680043.8.498.${Date.now()}.2${i}`);
    const studySet = new Set(studies);
    const replicas: Replica[] = [await startReplica(1, group, 0), await startReplica(2, group, 0)];
    const kills: string[] = [];
    let zombieLog: string | null = null;
    let producing = true;
    let running: Promise<unknown>[] = [];
    try {
      // Bursts of 10 images every second, each study's images spread over the run (versions rise
      // throughout); the last fifth waits until there were three kills, so every kill is under load.
      const events = Array.from({ length: IMAGES }, (_, image) => studies.map((s) => finding(s, image + 1))).flat();
      const load = (async () => {
        for (let i = 0; i < events.length; i += 10) {
          while (i >= events.length * 0.8 && kills.length < 4) await new Promise((r) => setTimeout(r, 250));
          await publish(events.slice(i, i + 10));
          await new Promise((r) => setTimeout(r, 1000));
        }
        producing = false;
      })();
      const chaos = (async () => {
        const startedAt = Date.now();
        while (producing) {
          await new Promise((r) => setTimeout(r, 2500 + Math.random() * 4000));
          if (!producing) break;
          // Half the time the replica that publishes the FHIR topic, else either.
          const owners = await Promise.all(replicas.map((r) => metric(r, 'thorax_fhir_outbox_owner').catch(() => 0)));
          const ownerIndex = owners.findIndex((v) => v === 1);
          const index = Math.random() < 0.5 && ownerIndex >= 0 ? ownerIndex : Math.floor(Math.random() * replicas.length);
          const victim = replicas[index] as Replica;
          if (kills.length === 1 && ownerIndex >= 0) {
            // Once: the owner frozen (SIGSTOP) and cut off from the database (its lock session
            // ended), so the other replica takes over and fences it; then it resumes as a zombie.
            const owner = replicas[ownerIndex] as Replica;
            owner.service.process.kill('SIGSTOP');
            const ended = await endBackends(db, 'thorax-results-session');
            await until('the other replica to take over', async () => (await metric(replicas[1 - ownerIndex] as Replica, 'thorax_fhir_outbox_owner')) === 1, 30_000);
            owner.service.process.kill('SIGCONT');
            zombieLog = owner.service.logFile;
            kills.push(`slot ${owner.slot} (owner) frozen, its lock session ended (${ended}), resumed after the takeover at ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
            continue;
          }
          await kill(victim);
          kills.push(`slot ${victim.slot}${index === ownerIndex ? ' (owner)' : ''} at ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
          replicas[index] = await startReplica(victim.slot, group, 0);
        }
      })();
      running = [load, chaos];
      await Promise.all(running);
      await consumed(group, 180_000);
      await until('every stored version to be published', async () => (await pending(db)) === 0, 180_000);
      const stored = await storedVersions(db, studySet);
      const result = verdict(await bundlesFor(stored), stored);
      const reconciled = (await Promise.all(replicas.map((r) => metric(r, 'thorax_fhir_bundles_total', 'outcome="reconciled"')))).reduce((a, b) => a + b, 0);
      // What the resumed zombie did: noticed its lost session, and/or was refused by Kafka as fenced.
      const zombieText = zombieLog ? readFileSync(zombieLog, 'utf8') : '';
      const zombie = {
        lostSession: zombieText.split('lost the FHIR outbox ownership').length - 1,
        fenced: zombieText.split('FHIR outbox producer fenced').length - 1,
      };
      say(
        [
          'FHIR topic, two results replicas killed at random under load (PostgreSQL, exactly-once):',
          `  findings events ${events.length} for ${STUDIES} studies (${IMAGES} images each), stored studies ${stored.size}`,
          `  faults: ${kills.length} [${kills.join('; ')}]`,
          `  bundles on the topic ${result.bundles} for ${result.distinct} (study, version): duplicates ${result.duplicates.length}, lost (last version missing) ${result.lost.length}, out of order ${result.outOfOrder}`,
          `  reconciled by the replicas running at the end ${reconciled}; the zombie after it resumed: lost session noticed ${zombie.lostSession}, fenced by Kafka ${zombie.fenced}`,
        ].join('\n'),
      );
      expect(stored.size).toBe(STUDIES);
      expect(kills.length).toBeGreaterThanOrEqual(4);
      expect(result.duplicates).toEqual([]);
      expect(result.lost).toEqual([]);
      expect(result.outOfOrder).toBe(0);
    } finally {
      producing = false;
      // After a failure the chaos loop may be restarting a replica: let it finish, then stop them all.
      await Promise.allSettled(running);
      await Promise.all(replicas.map((r) => kill(r)));
    }
  });
});
