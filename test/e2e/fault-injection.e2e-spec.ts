/**
 * Fault injection under load, on a broker and a PostgreSQL server of its own (so that killing
 * them touches no other test): the images are published in three bursts (60 %, 20 %, 20 %),
 * and while the pipeline works them off every component fails once —
 *   ingest     SIGKILL half-way through the burst, restarted;
 *   preprocess, inference, results   SIGKILL, restarted, each once its stage has work queued;
 *   the broker SIGKILL (no controlled shutdown) with the last burst queued at a frozen ingest,
 *              restarted on the same data;
 *   PostgreSQL stopped (fast shutdown: every connection of results is cut) and started again.
 * When the pipeline is quiet it prints inputs, findings events, stored results, DLQ records,
 * duplicates, losses and each service's peak RSS (VmHWM, every incarnation), and fails on any
 * loss, any duplicate stored result, any input with other than exactly one findings event for a
 * read_committed consumer (the stages commit in Kafka transactions, and the PACS publishes each
 * batch in one), any dead letter, a fault that met no backlog, or a service whose peak RSS passed
 * the bound: memory must not grow with the backlog.
 *
 * npm test runs it reduced (THORAX_FAULT_IMAGES, default 200); full size by hand:
 *   scripts/fault-injection.sh [images]          (default 5000)
 * Ports: THORAX_FAULT_PORT_BASE (default 23100): services base..base+3, results gRPC base+10,
 * broker base+20 (controller base+21), PostgreSQL base+30. The default lies below the kernel's
 * ephemeral range (32768-60999), so no outgoing connection can take a port while its owner
 * restarts.
 * THORAX_FAULT_MAX_RSS_MIB: the bound.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  countKeys,
  ExactlyOncePublisher,
  groupLag,
  logTail,
  PeakRssSampler,
  recordsIn,
  REPO_ROOT,
  type RunningService,
  type ServiceName,
  servicePorts,
  startBuiltService,
  startServices,
  storedRows,
  syntheticChestXray,
  waitForService,
} from '@thorax/testing';
import { type Admin, Kafka, logLevel } from 'kafkajs';

const exec = promisify(execFile);
const RUN = `e2e-fault-${Date.now().toString(36)}`;
const IMAGES = Number(process.env['THORAX_FAULT_IMAGES'] ?? 200);
const MAX_RSS_MIB = Number(process.env['THORAX_FAULT_MAX_RSS_MIB'] ?? 1024);
const BASE = Number(process.env['THORAX_FAULT_PORT_BASE'] ?? 23100);
const PORTS = servicePorts(BASE);
const BROKER = `127.0.0.1:${BASE + 20}`;
const RESULTS_HTTP = `http://127.0.0.1:${PORTS.results}`;
const STUDY_SIZE = 25;
// Draining is allowed 300 s plus 0.25 s an image (the four kills cost a session timeout each).
const QUIET_TIMEOUT_MS = 300_000 + IMAGES * 250;
jest.setTimeout(600_000 + QUIET_TIMEOUT_MS);

const STAGES: { name: ServiceName; group: string; topic: string }[] = [
  { name: 'ingest', group: 'thorax-ingest', topic: 'thorax.studies.v1' },
  { name: 'preprocess', group: 'thorax-preprocess', topic: 'thorax.images.v1' },
  { name: 'inference', group: 'thorax-inference', topic: 'thorax.tensors.v1' },
  { name: 'results', group: 'thorax-results', topic: 'thorax.findings.v1' },
];
const DLQS = STAGES.map((s) => `${s.topic}.dlq`);

const kafkaEnv = {
  KAFKA_PORT: String(BASE + 20),
  KAFKA_CONTROLLER_PORT: String(BASE + 21),
  KAFKA_STATE_DIR: path.join(REPO_ROOT, '.cache', `kafka-fault-${BASE}`),
  KAFKA_START_TIMEOUT: '180',
};
const pgEnv = {
  PG_TEST_PORT: String(BASE + 30),
  PG_STATE_DIR: path.join(REPO_ROOT, '.cache', `postgres-fault-${BASE}`),
};
const DATABASE_URL = `postgres://thorax@127.0.0.1:${BASE + 30}/thorax_test`;

const kafka = new Kafka({
  clientId: 'thorax-e2e-fault',
  brokers: [BROKER],
  logLevel: logLevel.NOTHING,
  retry: { initialRetryTime: 300, retries: 10 },
});
let admin: Admin;
let producer: ExactlyOncePublisher;
const services = new Map<ServiceName, RunningService>();
const sampler = new PeakRssSampler();
const logDir = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
const serviceEnv: Record<string, string> = {
  KAFKA_BROKERS: BROKER,
  DATABASE_URL,
  LOG_LEVEL: 'info',
  MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
  INFERENCE_PROVIDERS: 'cpu',
  // ingest's gRPC edge on this test's ports, not the default another run may hold
  INGEST_GRPC_PORT: String(BASE + 11),
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const say = (line: string) => process.stdout.write(`[fault-injection] ${line}\n`);

async function script(name: string, args: string[], env: Record<string, string>): Promise<string> {
  try {
    const { stdout, stderr } = await exec('bash', [path.join(REPO_ROOT, 'scripts', name), ...args], {
      env: { ...process.env, ...env },
      timeout: 300_000,
    });
    return stdout + stderr;
  } catch (error) {
    const e = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`${name} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/** SIGKILL of a process, and its exit awaited. */
async function killHard(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100; i += 1) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(100);
  }
  throw new Error(`process ${pid} survived SIGKILL`);
}

/** The broker's JVM, as scripts/kafka.sh recorded it (checked to be that broker). */
function brokerPid(): number {
  const pid = Number(readFileSync(path.join(kafkaEnv.KAFKA_STATE_DIR, 'kafka.pid'), 'utf8').replace(/\D/g, ''));
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  if (!cmdline.includes('kafka.Kafka')) throw new Error(`pid ${pid} is not the broker`);
  return pid;
}

function start(name: ServiceName): RunningService {
  const grpc: Record<string, string> = name === 'results' ? { GRPC_PORT: String(PORTS.resultsGrpc) } : {};
  const service = startBuiltService(name, { ...serviceEnv, ...grpc, HTTP_PORT: String(PORTS[name]) }, logDir);
  sampler.track(name, service.process.pid);
  return service;
}

/** SIGKILL of a running service and a replacement started in its place, ready. */
async function crashAndRestart(name: ServiceName): Promise<void> {
  const victim = services.get(name);
  if (!victim?.process.pid) throw new Error(`${name} is not running`);
  sampler.sample();
  await killHard(victim.process.pid);
  const replacement = start(name);
  services.set(name, replacement);
  await waitForService(replacement, `http://127.0.0.1:${PORTS[name]}/readyz`, 180_000);
}

/** Records of the pipeline not yet committed by the stage that consumes them. */
async function pipelineLag(): Promise<number> {
  let lag = 0;
  for (const s of STAGES) lag += await groupLag(admin, s.group, s.topic);
  return lag;
}

/** A service that exited on its own (not one this test killed: those are replaced in the map). */
function exited(): string | null {
  for (const [name, s] of services) {
    if (s.process.exitCode !== null || s.process.signalCode !== null) {
      return `${name} exited (${s.process.exitCode ?? s.process.signalCode}); ${s.logFile} ends:\n${logTail(s.logFile)}`;
    }
  }
  return null;
}

/**
 * Waits (polling the broker) until `ready()` holds; a broker briefly away only delays it, a
 * service that died fails at once.
 */
async function until(ready: () => Promise<boolean>, timeoutMs: number, what: string, intervalMs = 500): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  for (;;) {
    const dead = exited();
    if (dead) throw new Error(`while waiting for ${what}: ${dead}`);
    try {
      if (await ready()) return;
    } catch (error) {
      // the broker or results is restarting
      lastError = (error as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`);
    }
    await sleep(intervalMs);
  }
}

beforeAll(async () => {
  if (!enabled) return;
  const t0 = Date.now();
  await script('kafka.sh', ['reset'], kafkaEnv);
  await script('kafka.sh', ['start'], kafkaEnv);
  await script('postgres.sh', ['start'], pgEnv);
  say(`broker ${BROKER} and PostgreSQL 127.0.0.1:${BASE + 30} ready in ${((Date.now() - t0) / 1000).toFixed(0)}s`);
  admin = kafka.admin();
  await admin.connect();
  producer = new ExactlyOncePublisher(kafka, `${RUN}-pacs`);
  const started = await startServices({ ports: PORTS, env: serviceEnv, logDir, readyTimeoutMs: 180_000 });
  for (const [name, s] of started) {
    services.set(name, s);
    sampler.track(name, s.process.pid);
  }
  sampler.start();
}, 600_000);

afterAll(async () => {
  if (!enabled) return;
  sampler.stop();
  await producer?.disconnect().catch(() => undefined);
  await admin?.disconnect().catch(() => undefined);
  await Promise.all([...services.values()].map((s) => s.stop()));
  await script('kafka.sh', ['stop'], kafkaEnv).catch(() => undefined);
  await script('postgres.sh', ['stop'], pgEnv).catch(() => undefined);
}, 180_000);

// npm test runs it with 200 images; scripts/fault-injection.sh with more.
const enabled = IMAGES > 0;
const describeFault = enabled ? describe : describe.skip;

describeFault('fault injection under load', () => {
  it('loses nothing and stores one result per input when every service, the broker and PostgreSQL fail once', async () => {
    const variants = await Promise.all(
      Array.from({ length: 8 }, (_, i) => syntheticChestXray({ width: 256, height: 256, seed: 300 + i })),
    );
    const ids = Array.from({ length: IMAGES }, (_, i) => `${RUN}-${String(i).padStart(5, '0')}`);
    const studyPrefix = `1.2.826.0.1.3680043.8.498.${Date.now()}`;
    const studyUids = Array.from({ length: Math.ceil(IMAGES / STUDY_SIZE) }, (_, s) => `${studyPrefix}.${s + 1}`);
    const faults: { what: string; backlog: number; atS: number; tookS: number }[] = [];
    const t0 = Date.now();
    const fault = async (what: string, backlog: number, act: () => Promise<void>) => {
      const s = Date.now();
      await act();
      faults.push({ what, backlog, atS: (s - t0) / 1000, tookS: (Date.now() - s) / 1000 });
    };

    // Inputs [from, to) in acknowledged batches of 100; `after` runs once `sent` has passed `at`.
    let resends = 0;
    const publish = async (from: number, to: number, at = Infinity, after?: () => Promise<void>) => {
      for (let sent = from; sent < to;) {
        const batch = ids.slice(sent, Math.min(sent + 100, to)).map((id, k) => ({
          key: id,
          value: variants[(sent + k) % variants.length]!,
          headers: { 'content-type': 'image/png', 'thorax-study-uid': studyUids[Math.floor((sent + k) / STUDY_SIZE)]! },
        }));
        // One transaction a batch: a batch resent after a failure is seen once downstream.
        await producer.send('thorax.studies.v1', batch);
        resends = producer.resends;
        const before = sent;
        sent += batch.length;
        if (after && before < at && sent >= at) await after();
      }
    };
    // Three bursts, so that every fault meets work in flight however fast the stages drain (results
    // stores a fetch in one transaction and catches up within a second): 60 % of the inputs at once,
    // ingest killed half-way, then preprocess and inference each once its input has a backlog; 20 %
    // more, and results killed with them queued; the last 20 %, and the broker killed
    // at once; PostgreSQL when the broker is back.
    const firstBurst = Math.ceil(IMAGES * 0.6);
    const secondBurst = Math.ceil(IMAGES * 0.8);
    // Ingest commits each fetch in its transaction within moments, so it is frozen (SIGSTOP) while
    // the first half of the burst arrives, then killed with that backlog unconsumed.
    const ingest = services.get('ingest');
    if (!ingest?.process.pid) throw new Error('ingest is not running');
    process.kill(ingest.process.pid, 'SIGSTOP');
    await publish(0, firstBurst, Math.ceil(firstBurst / 2), async () =>
      // Frozen since before the first record, ingest has consumed none of what was published so
      // far (at least half the burst); the group's lag is reported when the broker shows more.
      fault('ingest', Math.max(await groupLag(admin, 'thorax-ingest', 'thorax.studies.v1'), Math.ceil(firstBurst / 2)), () =>
        crashAndRestart('ingest'),
      ),
    );
    // Polled every 100 ms: results commits about once a second, so its lag shows only briefly.
    // The way out when a stage drained before a backlog was seen (the fault then fails the run as
    // not under load) counts stored inputs, not committed findings events, which re-deliveries
    // inflate past the input count.
    const storedInputs = async () =>
      new Set((await storedRows(RESULTS_HTTP, studyUids)).map((r) => r.id).filter((id) => ids.includes(id))).size;
    // `published` null: no way out (results frozen cannot answer how many it stored).
    const killOnBacklog = async (stage: (typeof STAGES)[number], published: number | null) => {
      let backlog = 0;
      await until(
        async () =>
          (backlog = await groupLag(admin, stage.group, stage.topic)) > 0 ||
          (published !== null && (await storedInputs()) >= published),
        QUIET_TIMEOUT_MS,
        `a backlog at ${stage.name}`,
        100,
      );
      await fault(stage.name, backlog, () => crashAndRestart(stage.name));
    };
    for (const stage of STAGES.slice(1, 3)) await killOnBacklog(stage, firstBurst);
    // Results stores a whole fetch in one transaction and commits within moments, so its lag is
    // too brief to catch by polling: it is frozen (SIGSTOP) while the second burst reaches its
    // topic, then killed with that backlog unconsumed.
    const results = services.get('results');
    if (!results?.process.pid) throw new Error('results is not running');
    process.kill(results.process.pid, 'SIGSTOP');
    await publish(firstBurst, secondBurst);
    await killOnBacklog(STAGES[3]!, null);
    // Under exactly-once the stages can drain the last burst before a lag is polled, so ingest is
    // frozen (SIGSTOP) while it arrives: the broker then dies with that burst unconsumed, and ingest
    // is let go (SIGCONT) once the broker is back, on connections that died under it.
    const frozenIngest = services.get('ingest');
    if (!frozenIngest?.process.pid) throw new Error('ingest is not running');
    process.kill(frozenIngest.process.pid, 'SIGSTOP');
    await publish(secondBurst, IMAGES);
    const publishS = (Date.now() - t0) / 1000;
    // The backlog is the pipeline's lag, not inputs minus committed findings: the kills above
    // re-deliver, so the findings topic can hold more events than inputs.
    let brokerBacklog = 0;
    await until(async () => (brokerBacklog = await pipelineLag()) >= IMAGES - secondBurst, 30_000, 'the last burst queued at ingest');
    await fault('broker', brokerBacklog, async () => {
      sampler.sample();
      await killHard(brokerPid());
      await sleep(3000);
      await script('kafka.sh', ['start'], kafkaEnv);
      process.kill(frozenIngest.process.pid!, 'SIGCONT');
    });
    let pgBacklog = 0;
    // A fresh admin client per attempt: the one from before the kill can keep a dead connection.
    const renewedAdmin = async () => {
      await admin.disconnect().catch(() => undefined);
      admin = kafka.admin();
      await admin.connect();
    };
    await until(
      async () => (await renewedAdmin(), (pgBacklog = await pipelineLag()), true),
      120_000,
      'the broker after its restart',
    );
    await fault('postgresql', pgBacklog, async () => {
      await script('postgres.sh', ['stop'], pgEnv);
      await sleep(5000);
      await script('postgres.sh', ['start'], pgEnv);
    });

    // Quiet: every input stored and every consumer group caught up with its topic.
    const want = new Set(ids);
    await until(
      async () => {
        const stored = new Set(
          (await storedRows(RESULTS_HTTP, studyUids)).map((r) => r.id).filter((id) => want.has(id)),
        );
        return stored.size === want.size && (await pipelineLag()) === 0;
      },
      QUIET_TIMEOUT_MS,
      'every input stored and the pipeline caught up',
    );
    const drainS = (Date.now() - t0) / 1000 - publishS;
    expect(exited()).toBeNull();
    sampler.stop();

    const rows = await storedRows(RESULTS_HTTP, studyUids);
    const rowsPerId = new Map<string, number>();
    for (const r of rows) rowsPerId.set(r.id, (rowsPerId.get(r.id) ?? 0) + 1);
    const lost = ids.filter((id) => !rowsPerId.has(id));
    const duplicateRows = [...rowsPerId.values()].reduce((sum, n) => sum + n - 1, 0);
    const notOk = rows.filter((r) => r.status !== 'ok');
    const events = await countKeys(kafka, admin, 'thorax.findings.v1', 120_000);
    const eventCount = ids.reduce((sum, id) => sum + (events.get(id) ?? 0), 0);
    // Input records as the stages saw them (read_committed): the kafkajs PACS client can write a
    // record twice inside its transaction (a retried produce), which makes two inputs of one id.
    const inputs = await countKeys(kafka, admin, 'thorax.studies.v1', 120_000);
    const inputRecords = ids.reduce((sum, id) => sum + (inputs.get(id) ?? 0), 0);
    const duplicateEventIds = ids.filter((id) => (events.get(id) ?? 0) > (inputs.get(id) ?? 1)).length;
    const missingEvents = ids.filter((id) => (events.get(id) ?? 0) === 0).length;
    const deadLetters = (await Promise.all(DLQS.map((t) => recordsIn(admin, t)))).reduce((a, b) => a + b, 0);
    const peaks = sampler.peaksMib();

    say(
      `inputs ${IMAGES} published in three bursts by ${publishS.toFixed(1)}s (batches resent ${resends}); quiet ${drainS.toFixed(1)}s after the last input`,
    );
    for (const f of faults)
      say(
        `fault ${f.what.padEnd(10)} at ${f.atS.toFixed(1)}s with ${f.backlog} records queued; back in ${f.tookS.toFixed(1)}s`,
      );
    say(
      `findings events (read_committed) ${eventCount} for ${inputRecords} input records (${duplicateEventIds} ids with more events than input records, ${missingEvents} ids without an event)`,
    );
    say(
      `stored results ${rowsPerId.size}, duplicate stored results ${duplicateRows}, non-ok ${notOk.length}, lost ${lost.length}, DLQ records ${deadLetters}`,
    );
    say(
      `peak RSS (MiB, every incarnation): ${[...peaks].map(([n, mib]) => `${n} ${mib}`).join(', ')}; bound ${MAX_RSS_MIB}`,
    );

    expect(faults.map((f) => f.what)).toEqual(['ingest', 'preprocess', 'inference', 'results', 'broker', 'postgresql']);
    // Every fault met work in flight: it happened under load.
    for (const f of faults)
      expect({ fault: f.what, underLoad: f.backlog > 0 }).toEqual({ fault: f.what, underLoad: true });
    expect(lost).toEqual([]);
    expect(duplicateRows).toBe(0);
    expect(rowsPerId.size).toBe(IMAGES);
    expect(notOk).toEqual([]);
    expect(deadLetters).toBe(0);
    expect(missingEvents).toBe(0);
    // Exactly one event per input for a read_committed consumer (KAFKA_DELIVERY=exactly-once).
    expect(duplicateEventIds).toBe(0);
    expect(eventCount).toBe(inputRecords);
    for (const s of STAGES)
      expect({ service: s.name, boundedMib: (peaks.get(s.name) ?? Infinity) <= MAX_RSS_MIB }).toEqual({
        service: s.name,
        boundedMib: true,
      });
  });
});
