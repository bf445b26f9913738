/**
 * Kafka as a replicated cluster under a broker crash: a three-node KRaft cluster from the same
 * jars (scripts/kafka.sh cluster), topics provisioned by the built `topics` app from
 * deploy/kafka/topics.conf (replication 3, min.insync.replicas 2), the four built services on it.
 * Images are published at a steady rate; a third of the way in, the broker leading the most
 * pipeline partitions is killed with SIGKILL, and at two thirds it is restarted. When the pipeline
 * is quiet again, every input must have exactly one stored result (results' REST API), none lost,
 * none duplicated, none turned into an error by the failover. Findings events are counted too:
 * duplicates are possible under at-least-once delivery and are reported, not failed.
 *
 * More load: scripts/fault-cluster.sh (THORAX_CLUSTER_IMAGES, THORAX_CLUSTER_RATE).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  REPO_ROOT,
  type RunningService,
  type ServiceName,
  servicePorts,
  startServices,
  syntheticChestXray,
} from '@thorax/testing';
import { ConfigResourceTypes, type Admin, Kafka, logLevel, Partitioners, type Producer } from 'kafkajs';

const run = promisify(execFile);
const RUN = `e2e-cluster-${Date.now().toString(36)}`;
const IMAGES = Number(process.env['THORAX_CLUSTER_IMAGES'] ?? 300);
const RATE = Number(process.env['THORAX_CLUSTER_RATE'] ?? 6); // images per second
// Publishing takes IMAGES / RATE seconds; draining is allowed 300 s plus 0.2 s an image.
const QUIET_TIMEOUT_MS = 300_000 + IMAGES * 200;
jest.setTimeout(300_000 + (IMAGES / RATE) * 2000 + QUIET_TIMEOUT_MS);
const NODES = 3;
// Brokers on base+1..3 (controllers base+11..13), services on base+100.. (see servicePorts).
const BASE = Number(process.env['THORAX_CLUSTER_PORT_BASE'] ?? 21100);
const PORTS = servicePorts(BASE + 100);
const CLUSTER_DIR = path.join(REPO_ROOT, '.cache', `kafka-cluster-e2e-${BASE}`);
const BROKERS = Array.from({ length: NODES }, (_, i) => `127.0.0.1:${BASE + 1 + i}`);
const STUDY_SIZE = 25;
const PIPELINE: [group: string, topic: string][] = [
  ['thorax-ingest', 'thorax.studies.v1'],
  ['thorax-preprocess', 'thorax.images.v1'],
  ['thorax-inference', 'thorax.tensors.v1'],
  ['thorax-results', 'thorax.findings.v1'],
];
const DLQS = ['thorax.studies.v1.dlq', 'thorax.images.v1.dlq', 'thorax.tensors.v1.dlq', 'thorax.findings.v1.dlq'];

const kafka = new Kafka({
  clientId: 'thorax-e2e-pacs',
  brokers: BROKERS,
  logLevel: logLevel.NOTHING,
  retry: { initialRetryTime: 300, retries: 10 },
});
let admin: Admin;
let producer: Producer;
const services: RunningService[] = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const say = (line: string) => process.stdout.write(`[kafka-cluster] ${line}\n`);

/** scripts/kafka.sh in cluster mode on this test's ports and state directory. */
async function cluster(...args: string[]): Promise<string> {
  const env = {
    ...process.env,
    KAFKA_CLUSTER_NODES: String(NODES),
    KAFKA_CLUSTER_PORT_BASE: String(BASE),
    KAFKA_CLUSTER_DIR: CLUSTER_DIR,
    KAFKA_START_TIMEOUT: '300',
    KAFKA_ISR_TIMEOUT: '240',
    KAFKA_SKIP_TOPICS: '1',
  };
  try {
    const { stdout, stderr } = await run('bash', [path.join(REPO_ROOT, 'scripts', 'kafka.sh'), 'cluster', ...args], {
      env,
      timeout: 420_000,
    });
    return stdout + stderr;
  } catch (error) {
    const e = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`kafka.sh cluster ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/** Has every consumer group of the pipeline committed everything on its input topic? */
async function pipelineLag(): Promise<number> {
  let lag = 0;
  for (const [groupId, topic] of PIPELINE) {
    const ends = await admin.fetchTopicOffsets(topic);
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
    for (const e of ends) lag += Number(e.high) - Math.max(Number(e.low), at.get(e.partition) ?? -1);
  }
  return lag;
}

async function recordsIn(topic: string): Promise<number> {
  // Right after a broker's return, kafkajs can read topic metadata without partitions and throw:
  // ask again for a while before giving up.
  for (let attempt = 1; ; attempt += 1) {
    try {
      return (await admin.fetchTopicOffsets(topic)).reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
    } catch (error) {
      if (attempt >= 20) throw error;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Every record of a topic, read with a fresh consumer group: key → count. */
async function countKeys(topic: string, timeoutMs: number): Promise<Map<string, number>> {
  const total = await recordsIn(topic);
  const counts = new Map<string, number>();
  if (total === 0) return counts;
  let seen = 0;
  const consumer = kafka.consumer({ groupId: `${RUN}-count-${topic}`, maxBytesPerPartition: 52_428_800 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  await consumer.run({
    eachMessage: async ({ message }) => {
      const key = message.key?.toString() ?? '';
      counts.set(key, (counts.get(key) ?? 0) + 1);
      seen += 1;
      if (seen >= total) finish();
    },
  });
  const timer = setTimeout(finish, timeoutMs);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  if (seen < total) throw new Error(`read ${seen} of ${total} records of ${topic}`);
  return counts;
}

interface StoredRow {
  id: string;
  status: string;
}

/** Stored results of this run, one entry per row, through results' REST list by study. */
async function storedRows(studies: string[]): Promise<StoredRow[]> {
  const rows: StoredRow[] = [];
  for (const study of studies) {
    const res = await fetch(
      `http://127.0.0.1:${PORTS.results}/v1/findings?studyUid=${encodeURIComponent(study)}&limit=500`,
    );
    if (!res.ok) throw new Error(`GET /v1/findings?studyUid=${study}: ${res.status}`);
    const body = (await res.json()) as { results: StoredRow[]; nextCursor?: string | null };
    expect(body.nextCursor ?? null).toBeNull();
    rows.push(...body.results.map((r) => ({ id: r.id, status: r.status })));
  }
  return rows;
}

beforeAll(async () => {
  const t0 = Date.now();
  await cluster('reset');
  await cluster('start');
  say(`cluster of ${NODES} KRaft nodes ready on ${BROKERS.join(',')} in ${((Date.now() - t0) / 1000).toFixed(0)}s`);

  // Topics as a deployment provisions them: the built provisioner, topics.conf unchanged.
  const provisioner = await run(
    process.execPath,
    ['--disable-warning=TimeoutNegativeWarning', path.join(REPO_ROOT, 'dist', 'apps', 'topics', 'src', 'main.js')],
    {
      env: { ...process.env, KAFKA_BROKERS: BROKERS.join(','), LOG_LEVEL: 'info', TOPICS_WAIT_TIMEOUT_MS: '120000' },
      timeout: 180_000,
    },
  ).catch((error: Error & { stdout?: string }) => {
    throw new Error(`the topics provisioner failed: ${error.message}\n${(error.stdout ?? '').slice(-3000)}`);
  });
  expect(provisioner.stdout).toContain('"msg":"topics provisioned"');

  admin = kafka.admin();
  await admin.connect();
  producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await producer.connect();

  const env: Record<string, string> = {
    KAFKA_BROKERS: BROKERS.join(','),
    LOG_LEVEL: 'info',
    MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
    INFERENCE_PROVIDERS: 'cpu',
    ...(process.env['DATABASE_URL']
      ? { DATABASE_URL: process.env['DATABASE_URL'] }
      : { RESULTS_DATA_DIR: 'memory://' }),
  };
  const started = await startServices({
    ports: PORTS,
    env,
    logDir: path.join(REPO_ROOT, '.data', 'test-logs', RUN),
    readyTimeoutMs: 180_000,
  });
  services.push(...started.values());
}, 600_000);

afterAll(async () => {
  await producer?.disconnect();
  await admin?.disconnect();
  const codes = await Promise.all(services.map((s) => s.stop()));
  await cluster('stop');
  // Every service drains and exits cleanly on SIGTERM, after a broker crash too.
  expect(codes).toEqual(services.map(() => 0));
}, 120_000);

describe('a three-broker KRaft cluster losing a broker under load', () => {
  it('is provisioned from topics.conf: replication 3, min.insync.replicas 2, unclean election off', async () => {
    const { topics } = await admin.fetchTopicMetadata({ topics: PIPELINE.map(([, t]) => t) });
    for (const t of topics)
      for (const p of t.partitions)
        expect({ topic: t.name, replicas: p.replicas.length, isr: p.isr.length }).toEqual({
          topic: t.name,
          replicas: 3,
          isr: 3,
        });
    const { resources } = await admin.describeConfigs({
      includeSynonyms: false,
      resources: PIPELINE.map(([, name]) => ({ type: ConfigResourceTypes.TOPIC, name })),
    });
    for (const r of resources) {
      const value = (name: string) => r.configEntries.find((e) => e.configName === name)?.configValue;
      expect([r.resourceName, value('min.insync.replicas'), value('unclean.leader.election.enable')]).toEqual([
        r.resourceName,
        '2',
        'false',
      ]);
    }
  });

  it('stores exactly one result per input when a broker is killed and restarted mid-run', async () => {
    const variants = await Promise.all(
      Array.from({ length: 8 }, (_, i) => syntheticChestXray({ width: 256, height: 256, seed: 100 + i })),
    );
    const ids = Array.from({ length: IMAGES }, (_, i) => `${RUN}-${String(i).padStart(5, '0')}`);
    const studyPrefix = `1.2.826.0.1.3680043.8.498.${Date.now()}`;
    const studyUids = Array.from({ length: Math.ceil(IMAGES / STUDY_SIZE) }, (_, s) => `${studyPrefix}.${s + 1}`);

    // The victim: the broker leading the most partitions of the pipeline topics.
    const { topics } = await admin.fetchTopicMetadata({ topics: PIPELINE.map(([, t]) => t) });
    const leads = new Map<number, number>();
    for (const t of topics) for (const p of t.partitions) leads.set(p.leader, (leads.get(p.leader) ?? 0) + 1);
    const [victim, victimLeads] = [...leads].sort((a, b) => b[1] - a[1])[0]!;
    const { controller } = await admin.describeCluster();

    const perTick = Math.max(1, Math.round(RATE / 2));
    let resends = 0;
    let maxSendMs = 0;
    let killedAt = -1;
    let restartedAt = -1;
    let restart: Promise<string> | null = null;
    const t0 = Date.now();
    for (let sent = 0; sent < IMAGES;) {
      const tick = Date.now();
      const batch = ids.slice(sent, sent + perTick).map((id, k) => ({
        key: id,
        value: variants[(sent + k) % variants.length]!,
        headers: { 'content-type': 'image/png', 'thorax-study-uid': studyUids[Math.floor((sent + k) / STUDY_SIZE)]! },
      }));
      // A PACS resends what was not acknowledged (at-least-once input); results must still store one row.
      for (let attempt = 1; ; attempt += 1) {
        const s = Date.now();
        try {
          await producer.send({ topic: 'thorax.studies.v1', acks: -1, messages: batch });
          maxSendMs = Math.max(maxSendMs, Date.now() - s);
          break;
        } catch (error) {
          resends += 1;
          if (attempt >= 20) throw error;
          await sleep(1000);
        }
      }
      sent += batch.length;
      if (killedAt < 0 && sent >= IMAGES / 3) {
        await cluster('kill', String(victim));
        killedAt = sent;
      }
      if (restartedAt < 0 && sent >= (2 * IMAGES) / 3) {
        restart = cluster('restart', String(victim));
        restartedAt = sent;
      }
      await sleep(Math.max(0, 500 - (Date.now() - tick)));
    }
    const publishS = (Date.now() - t0) / 1000;
    await restart;
    const isrStart = Date.now();
    await cluster('wait-isr');
    const isrS = (Date.now() - isrStart) / 1000;

    // Quiet: every input stored and every consumer group caught up with its topic.
    const want = new Set(ids);
    let rows: StoredRow[] = [];
    const deadline = Date.now() + QUIET_TIMEOUT_MS;
    for (;;) {
      rows = await storedRows(studyUids);
      const stored = new Set(rows.map((r) => r.id).filter((id) => want.has(id)));
      if (stored.size === want.size && (await pipelineLag()) === 0) break;
      if (Date.now() > deadline)
        throw new Error(`not quiet in time: ${stored.size} of ${want.size} stored, lag ${await pipelineLag()}`);
      await sleep(2000);
    }
    const drainS = (Date.now() - t0) / 1000 - publishS;
    rows = await storedRows(studyUids);

    const rowsPerId = new Map<string, number>();
    for (const r of rows) rowsPerId.set(r.id, (rowsPerId.get(r.id) ?? 0) + 1);
    const lost = ids.filter((id) => !rowsPerId.has(id));
    const duplicateRows = [...rowsPerId.values()].reduce((sum, n) => sum + n - 1, 0);
    const notOk = rows.filter((r) => r.status !== 'ok');
    const events = await countKeys('thorax.findings.v1', 60_000);
    const eventCount = ids.reduce((sum, id) => sum + (events.get(id) ?? 0), 0);
    const duplicateEventIds = ids.filter((id) => (events.get(id) ?? 0) > 1).length;
    const deadLetters = (await Promise.all(DLQS.map(recordsIn))).reduce((a, b) => a + b, 0);

    say(
      `killed node ${victim} (leader of ${victimLeads} of ${topics.reduce((n, t) => n + t.partitions.length, 0)} pipeline partitions, ` +
        `${victim === controller ? 'the active controller' : `controller was node ${controller}`}) after ${killedAt} inputs; restarted after ${restartedAt}; ` +
        `all replicas back in sync ${isrS.toFixed(1)}s after it answered`,
    );
    say(
      `inputs ${IMAGES} published in ${publishS.toFixed(1)}s (${(IMAGES / publishS).toFixed(1)}/s), input batches resent ${resends}, slowest acknowledged send ${maxSendMs} ms`,
    );
    say(
      `stored results ${rowsPerId.size}, lost ${lost.length}, duplicate stored rows ${duplicateRows}, non-ok results ${notOk.length}, dead letters ${deadLetters}`,
    );
    say(
      `findings events ${eventCount}, ids with duplicate events ${duplicateEventIds} (${eventCount - IMAGES} extra), pipeline quiet ${drainS.toFixed(1)}s after the last input`,
    );

    expect(killedAt).toBeGreaterThan(0);
    expect(restartedAt).toBeGreaterThan(killedAt);
    expect(lost).toEqual([]);
    expect(duplicateRows).toBe(0);
    expect(rowsPerId.size).toBe(IMAGES);
    expect(notOk).toEqual([]);
    expect(deadLetters).toBe(0);
    for (const id of ids) expect(events.get(id) ?? 0).toBeGreaterThanOrEqual(1);
  });

  it('keeps every service alive and ready after the broker came back', async () => {
    for (const s of services) {
      expect(s.process.exitCode).toBeNull();
      expect((await fetch(`http://127.0.0.1:${PORTS[s.name as ServiceName]}/readyz`)).status).toBe(200);
    }
  });
});
