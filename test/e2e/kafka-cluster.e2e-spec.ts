/**
 * Kafka as a replicated cluster under a broker crash: a three-node KRaft cluster from the same
 * jars (scripts/kafka.sh cluster), topics provisioned by the built `topics` app from
 * deploy/kafka/topics.conf (replication 3, min.insync.replicas 2), the four built services on it.
 * Images are published at a steady rate, each batch in a Kafka transaction (a PACS whose resent
 * batches the stages never see twice); a third of the way in, the broker leading the most
 * pipeline partitions is killed with SIGKILL, and at two thirds it is restarted. In the same run
 * each stage is killed with SIGKILL once and replaced (ingest at 1/6, preprocess at 1/2,
 * inference at 7/12, results at 5/6). When the pipeline is quiet again, every input must have
 * exactly one stored result (results' REST API), none lost, none duplicated, none turned into an
 * error by the failover, and a read_committed consumer of thorax.findings.v1 must see exactly one
 * event per input: the stages commit their outputs and input offsets in Kafka transactions
 * (KAFKA_DELIVERY=exactly-once, docs/kafka-cluster.md "Exactly-once").
 *
 * More load: scripts/fault-cluster.sh (THORAX_CLUSTER_IMAGES, THORAX_CLUSTER_RATE).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  countKeys,
  ExactlyOncePublisher,
  REPO_ROOT,
  type RunningService,
  type ServiceName,
  servicePorts,
  startBuiltService,
  startServices,
  syntheticChestXray,
  waitForService,
} from '@thorax/testing';
import { ConfigResourceTypes, type Admin, Kafka, logLevel } from 'kafkajs';

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
let pacs: ExactlyOncePublisher;
const services: RunningService[] = [];
let serviceEnv: Record<string, string> = {};
const logDir = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
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

/** Records of `name`'s input topic its group has not committed yet. */
async function stageLag(name: ServiceName): Promise<number> {
  const [groupId, topic] = PIPELINE[['ingest', 'preprocess', 'inference', 'results'].indexOf(name)]!;
  const ends = await admin.fetchTopicOffsets(topic);
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
  const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
  return ends.reduce((lag, e) => lag + Number(e.high) - Math.max(Number(e.low), at.get(e.partition) ?? -1), 0);
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
  pacs = new ExactlyOncePublisher(kafka, `${RUN}-pacs`);

  const env: Record<string, string> = {
    KAFKA_BROKERS: BROKERS.join(','),
    LOG_LEVEL: 'info',
    MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
    INFERENCE_PROVIDERS: 'cpu',
    // ingest's gRPC edge on this test's ports, not the default another run may hold
    INGEST_GRPC_PORT: String(BASE + 111),
    ...(process.env['DATABASE_URL']
      ? { DATABASE_URL: process.env['DATABASE_URL'] }
      : // On disk: results is killed mid-run and its replacement must find what it stored.
        { RESULTS_DATA_DIR: path.join(REPO_ROOT, '.cache', `results-${RUN}`) }),
  };
  serviceEnv = env;
  const started = await startServices({ ports: PORTS, env, logDir, readyTimeoutMs: 180_000 });
  services.push(...started.values());
}, 600_000);

afterAll(async () => {
  await pacs?.disconnect();
  await admin?.disconnect();
  const codes = await Promise.all(services.map((s) => s.stop()));
  await cluster('stop');
  // Every service drains and exits cleanly on SIGTERM, after a broker crash too.
  expect(codes).toEqual(services.map(() => 0));
}, 120_000);

/** SIGKILL of a running stage and a replacement started in its place (not awaited for readiness here). */
async function crashAndRestart(name: ServiceName): Promise<void> {
  const index = services.findIndex((s) => s.name === name);
  const victim = services[index];
  if (!victim?.process.pid) throw new Error(`${name} is not running`);
  const exited = new Promise((resolve) => victim.process.once('exit', resolve));
  victim.process.kill('SIGKILL');
  await exited;
  const grpc: Record<string, string> = name === 'results' ? { GRPC_PORT: String(PORTS.resultsGrpc) } : {};
  const replacement = startBuiltService(name, { ...serviceEnv, ...grpc, HTTP_PORT: String(PORTS[name]) }, logDir);
  services[index] = replacement;
  await waitForService(replacement, `http://127.0.0.1:${PORTS[name]}/readyz`, 240_000);
}

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
    const stageKills: { name: ServiceName; when: number; at: number; backlog: number; done: Promise<void> | null }[] = [
      { name: 'ingest', when: 1 / 6, at: -1, backlog: 0, done: null },
      { name: 'preprocess', when: 1 / 2, at: -1, backlog: 0, done: null },
      { name: 'inference', when: 7 / 12, at: -1, backlog: 0, done: null },
      { name: 'results', when: 5 / 6, at: -1, backlog: 0, done: null },
    ];
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
      // A PACS resends what was not acknowledged; each try is a transaction, so a resent batch
      // whose first try landed is aborted there and seen once.
      const s = Date.now();
      await pacs.send('thorax.studies.v1', batch);
      maxSendMs = Math.max(maxSendMs, Date.now() - s);
      sent += batch.length;
      for (const kill of stageKills) {
        if (kill.at < 0 && sent >= kill.when * IMAGES) {
          kill.at = sent;
          kill.backlog = await stageLag(kill.name);
          // In the background: publishing goes on while the replacement starts.
          kill.done = crashAndRestart(kill.name);
        }
      }
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
    const resends = pacs.resends;
    await restart;
    await Promise.all(stageKills.map((k) => k.done));
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
    // read_committed, as the contract tells EHR consumers to read.
    const events = await countKeys(kafka, admin, 'thorax.findings.v1', 120_000);
    const eventCount = ids.reduce((sum, id) => sum + (events.get(id) ?? 0), 0);
    // The input records as the stages saw them (read_committed): a PACS client that wrote one
    // twice (a kafkajs retry inside its transaction) made two inputs of one id.
    const inputs = await countKeys(kafka, admin, 'thorax.studies.v1', 120_000);
    const duplicateInputIds = ids.filter((id) => (inputs.get(id) ?? 0) > 1).length;
    const duplicateEventIds = ids.filter((id) => (events.get(id) ?? 0) > (inputs.get(id) ?? 1)).length;
    const missingEvents = ids.filter((id) => (events.get(id) ?? 0) < Math.max(1, inputs.get(id) ?? 1)).length;
    const inputRecords = ids.reduce((sum, id) => sum + (inputs.get(id) ?? 0), 0);
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
    for (const k of stageKills) say(`stage ${k.name.padEnd(10)} killed (SIGKILL) after ${k.at} inputs with ${k.backlog} records queued at it; replaced`);
    say(
      `findings events (read_committed) ${eventCount} for ${inputRecords} input records (${duplicateInputIds} ids written twice by the PACS client): ids with more events than input records ${duplicateEventIds}, ids with fewer ${missingEvents}; pipeline quiet ${drainS.toFixed(1)}s after the last input`,
    );

    expect(killedAt).toBeGreaterThan(0);
    expect(restartedAt).toBeGreaterThan(killedAt);
    expect(lost).toEqual([]);
    expect(duplicateRows).toBe(0);
    expect(rowsPerId.size).toBe(IMAGES);
    expect(notOk).toEqual([]);
    expect(deadLetters).toBe(0);
    for (const k of stageKills) expect({ stage: k.name, killed: k.at > 0 }).toEqual({ stage: k.name, killed: true });
    // Exactly one findings event per input record for a read_committed consumer: no duplicates
    // added by the pipeline, no losses.
    expect(duplicateEventIds).toBe(0);
    expect(missingEvents).toBe(0);
    expect(eventCount).toBe(inputRecords);
  });

  it('keeps every service alive and ready after the broker came back', async () => {
    for (const s of services) {
      expect(s.process.exitCode).toBeNull();
      expect((await fetch(`http://127.0.0.1:${PORTS[s.name as ServiceName]}/readyz`)).status).toBe(200);
    }
  });
});
