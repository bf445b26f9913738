/**
 * Inference and pipeline throughput, measured side by side in one run on this machine:
 *  (a) raw onnxruntime-node in-process throughput per batch size (the limit);
 *  (b) the inference service alone, fed from a pre-filled tensors topic;
 *  (c) the whole pipeline, raw images on the studies topic to stored results;
 *  (d) the ideal pipeline throughput implied by each stage's isolated rate on the same cores,
 *      1 / Σ(1 / rate_i), since every stage shares the same cores;
 * plus p50/p95/p99 latency (publish → findings event readable) at about half of (c).
 * Prints a table and writes JSON under .data/bench/. A command, not a test: figures are noisy on
 * shared machines, so compare the ratios, which are measured in the same run.
 * BENCH_ONLY=service stops after (a) and (b), for tuning the inference service alone.
 */
import {
  ImageAccepted,
  PixelFormat,
  PreprocessedImage,
  Priority,
  Source,
  encodeFindingsEvent,
  okFindingsEvent,
  CHESTXRAY14_LABELS,
} from '@thorax/contracts';
import { toWireImage } from '@thorax/imaging';
import { Classifier, listModelVersions, loadModelArtifact } from '@thorax/model-runtime';
import { REPO_ROOT, type RunningService, startServices, syntheticChestXray } from '@thorax/testing';
import { Kafka, logLevel, Partitioners, type Producer } from 'kafkajs';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';

const env = process.env;
const BROKERS = (env['KAFKA_BROKERS'] ?? '127.0.0.1:9092').split(',');
const STAGE_IMAGES = Number(env['BENCH_IMAGES'] ?? 1200);
/** Raw 1024² PNGs are ~1 MB each: fewer of them for the stages that carry files. */
const PNG_IMAGES = Number(env['BENCH_PNG_IMAGES'] ?? 400);
const PIPELINE_IMAGES = Number(env['BENCH_PIPELINE_IMAGES'] ?? 400);
const LATENCY_SECONDS = Number(env['BENCH_LATENCY_SECONDS'] ?? 15);
const MODEL_DIR = path.resolve(REPO_ROOT, env['MODEL_DIR'] ?? 'models/thorax-tiny-cnn');
const PORT_BASE = Number(env['BENCH_PORT_BASE'] ?? 24080);
const RUN = `bench-${Date.now().toString(36)}`;
const LOG_DIR = path.join(REPO_ROOT, '.data', 'bench', RUN);
const kafka = new Kafka({ clientId: 'thorax-bench', brokers: BROKERS, logLevel: logLevel.NOTHING });

type StageName = 'ingest' | 'preprocess' | 'inference' | 'results';
const PORTS: Record<StageName, number> = {
  results: PORT_BASE,
  ingest: PORT_BASE + 1,
  preprocess: PORT_BASE + 2,
  inference: PORT_BASE + 3,
};

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

// ---------------------------------------------------------------- (a) raw onnxruntime-node
async function rawThroughput(
  modelFile: string,
  batchSizes: number[],
  seconds: number,
): Promise<Record<number, number>> {
  const dir = path.dirname(modelFile);
  const artifact = await loadModelArtifact(path.dirname(dir), path.basename(dir), path.basename(modelFile));
  // The limit: one in-process session using every core (run() holds its thread, so sessions in
  // one thread cannot overlap).
  const classifier = await Classifier.create(artifact, {
    providers: ['cpu'],
    intraOpThreads: Number(env['BENCH_RAW_THREADS'] ?? cpus().length),
  });
  const image = new Uint8Array(256 * 256).map((_, i) => (i * 31) % 251);
  // Rounds interleave the batch sizes so a burst of load from elsewhere does not favour one;
  // the median round counts.
  const rounds: Record<number, number[]> = {};
  for (let round = 0; round < 3; round += 1) {
    for (const size of batchSizes) {
      const batch = Array.from({ length: size }, () => image);
      for (let i = 0; i < 2; i += 1) await classifier.classify(batch);
      let images = 0;
      const start = performance.now();
      while (performance.now() - start < (seconds * 1000) / 3) {
        await classifier.classify(batch);
        images += size;
      }
      (rounds[size] ??= []).push(images / ((performance.now() - start) / 1000));
    }
  }
  const out: Record<number, number> = {};
  for (const [size, rates] of Object.entries(rounds)) out[Number(size)] = [...rates].sort((a, b) => a - b)[1] ?? 0;
  await classifier.release();
  return out;
}

// ---------------------------------------------------------------- Kafka plumbing
interface Topics {
  studies: string;
  images: string;
  tensors: string;
  findings: string;
}

async function createTopics(scenario: string): Promise<Topics> {
  const t: Topics = {
    studies: `${RUN}.${scenario}.studies`,
    images: `${RUN}.${scenario}.images`,
    tensors: `${RUN}.${scenario}.tensors`,
    findings: `${RUN}.${scenario}.findings`,
  };
  const admin = kafka.admin();
  await admin.connect();
  const big = [{ name: 'max.message.bytes', value: '52428800' }];
  await admin.createTopics({
    waitForLeaders: true,
    topics: [
      ...Object.values(t).map((topic) => ({ topic, numPartitions: 6, configEntries: big })),
      ...Object.values(t).map((topic) => ({ topic: `${topic}.dlq`, numPartitions: 1, configEntries: big })),
    ],
  });
  await admin.disconnect();
  return t;
}

async function deleteTopics(t: Topics): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin
    .deleteTopics({ topics: [...Object.values(t), ...Object.values(t).map((x) => `${x}.dlq`)] })
    .catch(() => undefined);
  await admin.disconnect();
}

async function withProducer<T>(work: (p: Producer) => Promise<T>): Promise<T> {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    return await work(producer);
  } finally {
    await producer.disconnect();
  }
}

async function fill(
  topic: string,
  records: { key: string; value: Buffer; headers?: Record<string, string> }[],
): Promise<void> {
  await withProducer(async (p) => {
    for (let i = 0; i < records.length; i += 100) {
      await p.send({ topic, acks: -1, messages: records.slice(i, i + 100) });
    }
  });
}

function serviceEnv(t: Topics, scenario: string): Record<string, string> {
  return {
    KAFKA_BROKERS: BROKERS.join(','),
    LOG_LEVEL: 'warn',
    TOPIC_STUDIES: t.studies,
    TOPIC_IMAGES: t.images,
    TOPIC_TENSORS: t.tensors,
    TOPIC_FINDINGS: t.findings,
    INGEST_GROUP_ID: `${RUN}-${scenario}-ingest`,
    PREPROCESS_GROUP_ID: `${RUN}-${scenario}-preprocess`,
    INFERENCE_GROUP_ID: `${RUN}-${scenario}-inference`,
    RESULTS_GROUP_ID: `${RUN}-${scenario}-results`,
    RESULTS_DATA_DIR: 'memory://',
    MODEL_DIR,
    INFERENCE_PROVIDERS: 'cpu',
    INFERENCE_MODEL_POLL_MS: '0',
  };
}

async function startStages(
  names: StageName[],
  t: Topics,
  scenario: string,
  extra: Record<string, string> = {},
): Promise<RunningService[]> {
  const services = await startServices({
    names,
    ports: { ...PORTS, resultsGrpc: PORT_BASE + 10 },
    env: { ...serviceEnv(t, scenario), ...extra },
    logDir: path.join(LOG_DIR, scenario),
  });
  return [...services.values()];
}

/** thorax_messages_total{topic, outcome="ok"} of one service, from its /metrics. */
async function okCount(name: StageName, topic: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${PORTS[name]}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (
      line.startsWith('thorax_messages_total{') &&
      line.includes(`topic="${topic}"`) &&
      line.includes('outcome="ok"')
    ) {
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return total;
}

/** Images/s between the first progress and the last record, polled from a service's metrics. */
/**
 * Images/s from the first progress to the last record, polled from a service's metrics. The
 * clock starts at the last poll that still saw no progress, so a fast stage is timed
 * conservatively (never a division by zero).
 */
async function measureRate(name: StageName, topic: string, expected: number, timeoutMs = 600_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let idleSince = performance.now();
  let started = false;
  for (;;) {
    const n = await okCount(name, topic);
    const t = performance.now();
    if (n > 0) started = true;
    else idleSince = t;
    if (started && n >= expected) return n / ((t - idleSince) / 1000);
    if (Date.now() > deadline) throw new Error(`${name} handled ${n}/${expected} records before the timeout`);
    // Every scrape costs the service CPU (the whole registry is serialised): poll gently.
    await new Promise((r) => setTimeout(r, 200));
  }
}

// ---------------------------------------------------------------- fixtures
async function fixtures(): Promise<{ png: Buffer[]; wire: Buffer[] }> {
  const png: Buffer[] = [];
  const wire: Buffer[] = [];
  for (let seed = 1; seed <= 8; seed += 1) {
    const file = await syntheticChestXray({ width: 1024, height: 1024, seed });
    png.push(file);
    wire.push(Buffer.from((await toWireImage(file)).pixels));
  }
  return { png, wire };
}

function accepted(id: string, data: Buffer): Buffer {
  const message: ImageAccepted = {
    id,
    contentType: 'image/png',
    study: undefined,
    priority: Priority.PRIORITY_ROUTINE,
    receivedAt: new Date(),
    source: Source.SOURCE_KAFKA,
    sizeBytes: data.length,
    sha256: createHash('sha256').update(data).digest('hex'),
    data,
    uri: undefined,
  };
  return Buffer.from(ImageAccepted.encode(message).finish());
}

function tensor(id: string, pixels: Buffer): Buffer {
  const message: PreprocessedImage = {
    id,
    study: undefined,
    priority: Priority.PRIORITY_ROUTINE,
    receivedAt: new Date(),
    width: 256,
    height: 256,
    pixelFormat: PixelFormat.PIXEL_FORMAT_GREY8,
    pixels,
    source: undefined,
    preprocessing: 'thorax.wire.v2',
  };
  return Buffer.from(PreprocessedImage.encode(message).finish());
}

function findingsRecord(id: string): Buffer {
  return encodeFindingsEvent(
    okFindingsEvent({
      id,
      receivedAt: new Date(),
      model: { name: 'bench', version: '1', sha256: '0'.repeat(64), provenance: { data: 'synthetic', clinical: false, dataset: null, note: 'bench' } },
      labels: CHESTXRAY14_LABELS,
      thresholds: CHESTXRAY14_LABELS.map(() => 0.5),
      probabilities: CHESTXRAY14_LABELS.map((_, i) => (i + 1) / 20),
    }),
  );
}

// ---------------------------------------------------------------- scenarios
async function stageAlone(
  name: StageName,
  make: (t: Topics) => { topic: string; records: { key: string; value: Buffer; headers?: Record<string, string> }[] },
  extra: Record<string, string> = {},
): Promise<number> {
  const t = await createTopics(name);
  const { topic, records } = make(t);
  await fill(topic, records);
  const services = await startStages([name], t, name, extra);
  try {
    return await measureRate(name, topic, records.length);
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    await deleteTopics(t);
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function pipeline(fx: {
  png: Buffer[];
}): Promise<{ throughput: number; latency: { p50: number; p95: number; p99: number; n: number; rate: number } }> {
  const t = await createTopics('pipeline');
  const records = Array.from({ length: PIPELINE_IMAGES }, (_, i) => ({
    key: `${RUN}-p-${i}`,
    value: fx.png[i % fx.png.length] as Buffer,
    headers: { 'content-type': 'image/png' },
  }));
  await fill(t.studies, records);
  const services = await startStages(['results', 'inference', 'preprocess', 'ingest'], t, 'pipeline');
  try {
    const throughput = await measureRate('results', t.findings, PIPELINE_IMAGES);
    // Latency at about half of the measured throughput: paced publishing, timed to the findings.
    const rate = Math.max(1, throughput / 2);
    const total = Math.max(10, Math.round(rate * LATENCY_SECONDS));
    const sentAt = new Map<string, number>();
    const latencies: number[] = [];
    const consumer = kafka.consumer({ groupId: `${RUN}-latency`, maxWaitTimeInMs: 20 });
    await consumer.connect();
    await consumer.subscribe({ topic: t.findings, fromBeginning: false });
    let resolveDone: () => void = () => undefined;
    const done = new Promise<void>((r) => (resolveDone = r));
    await consumer.run({
      eachMessage: async ({ message }) => {
        const key = message.key?.toString() ?? '';
        const sent = sentAt.get(key);
        if (sent !== undefined) {
          latencies.push(performance.now() - sent);
          sentAt.delete(key);
          if (latencies.length >= total) resolveDone();
        }
      },
    });
    await new Promise((r) => setTimeout(r, 3000)); // group join
    await withProducer(async (p) => {
      const start = performance.now();
      for (let i = 0; i < total; i += 1) {
        const due = start + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const key = `${RUN}-l-${i}`;
        sentAt.set(key, performance.now());
        await p.send({
          topic: t.studies,
          acks: -1,
          messages: [{ key, value: fx.png[i % fx.png.length] as Buffer, headers: { 'content-type': 'image/png' } }],
        });
      }
    });
    await Promise.race([done, new Promise((r) => setTimeout(r, 60_000))]);
    await consumer.disconnect();
    latencies.sort((a, b) => a - b);
    return {
      throughput,
      latency: {
        p50: percentile(latencies, 50),
        p95: percentile(latencies, 95),
        p99: percentile(latencies, 99),
        n: latencies.length,
        rate,
      },
    };
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    await deleteTopics(t);
  }
}

async function main(): Promise<void> {
  mkdirSync(LOG_DIR, { recursive: true });
  const versions = await listModelVersions(MODEL_DIR);
  const version = versions.at(-1) ?? '';
  const versionDir = path.join(MODEL_DIR, version);
  const variants = readdirSync(versionDir)
    .filter((f) => f.endsWith('.onnx'))
    .sort();
  say(
    `Thorax inference benchmark ${RUN}: model ${path.relative(REPO_ROOT, versionDir)} (${variants.join(', ')}), brokers ${BROKERS.join(',')}`,
  );

  const batchSizes = [1, 2, 4, 8, 16, 32];
  const raw: Record<string, Record<number, number>> = {};
  for (const file of variants) raw[file] = await rawThroughput(path.join(versionDir, file), batchSizes, 2);
  const fp32 = raw['model.onnx'] ?? {};
  const [bestBatch, bestRaw] = Object.entries(fp32).reduce((a, b) => (b[1] > a[1] ? b : a), ['1', 0] as [
    string,
    number,
  ]);
  say(
    `(a) raw onnxruntime-node, in process, img/s by batch: ${Object.entries(fp32)
      .map(([b, r]) => `${b}:${r.toFixed(0)}`)
      .join('  ')}`,
  );
  for (const [file, rates] of Object.entries(raw)) {
    if (file === 'model.onnx') continue;
    const best = Math.max(...Object.values(rates));
    say(`    ${file}: best ${best.toFixed(0)} img/s = ${(best / bestRaw).toFixed(2)}x fp32`);
  }

  const fx = await fixtures();
  const n = STAGE_IMAGES;
  // The service's own default batch limit unless set: the raw best batch (one session, every
  // core) is not the best for two single-threaded workers.
  const maxBatch = env['INFERENCE_MAX_BATCH'] ?? '8';
  const inference = await stageAlone(
    'inference',
    (t) => ({
      topic: t.tensors,
      records: Array.from({ length: n }, (_, i) => ({
        key: `${RUN}-t-${i}`,
        value: tensor(`${RUN}-t-${i}`, fx.wire[i % fx.wire.length] as Buffer),
      })),
    }),
    { INFERENCE_MAX_BATCH: String(maxBatch) },
  );
  say(
    `(b) inference service alone (max batch ${maxBatch}): ${inference.toFixed(1)} img/s   (b)/(a) = ${(inference / bestRaw).toFixed(2)}`,
  );
  const variantsServed: Record<string, number> = {};
  for (const file of variants.filter((f) => f !== 'model.onnx')) {
    const rate = await stageAlone(
      'inference',
      (t) => ({
        topic: t.tensors,
        records: Array.from({ length: n }, (_, i) => ({
          key: `${RUN}-v-${i}`,
          value: tensor(`${RUN}-v-${i}`, fx.wire[i % fx.wire.length] as Buffer),
        })),
      }),
      { INFERENCE_MAX_BATCH: String(maxBatch), INFERENCE_MODEL_FILE: file },
    );
    variantsServed[file] = rate;
    say(`    service with ${file}: ${rate.toFixed(1)} img/s = ${(rate / inference).toFixed(2)}x the fp32 service`);
  }
  if (env['BENCH_ONLY'] === 'service') {
    say('BENCH_ONLY=service: stopping after (a) and (b)');
    return;
  }
  const ingest = await stageAlone('ingest', (t) => ({
    topic: t.studies,
    records: Array.from({ length: PNG_IMAGES }, (_, i) => ({
      key: `${RUN}-s-${i}`,
      value: fx.png[i % fx.png.length] as Buffer,
      headers: { 'content-type': 'image/png' },
    })),
  }));
  const preprocess = await stageAlone('preprocess', (t) => ({
    topic: t.images,
    records: Array.from({ length: PNG_IMAGES }, (_, i) => ({
      key: `${RUN}-i-${i}`,
      value: accepted(`${RUN}-i-${i}`, fx.png[i % fx.png.length] as Buffer),
    })),
  }));
  const results = await stageAlone('results', (t) => ({
    topic: t.findings,
    records: Array.from({ length: n }, (_, i) => ({ key: `${RUN}-f-${i}`, value: findingsRecord(`${RUN}-f-${i}`) })),
  }));
  const stages = { ingest, preprocess, inference, results };
  const ideal = 1 / Object.values(stages).reduce((sum, r) => sum + 1 / r, 0);
  say(
    `(d) isolated stage rates, img/s: ${Object.entries(stages)
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(', ')}  → ideal pipeline ${ideal.toFixed(1)} img/s`,
  );
  const pipe = await pipeline(fx);
  say(
    `(c) whole pipeline, 1024² PNG on the studies topic → stored results: ${pipe.throughput.toFixed(1)} img/s   (c)/(d) = ${(pipe.throughput / ideal).toFixed(2)}`,
  );
  say(
    `    latency at ${pipe.latency.rate.toFixed(1)} img/s (n=${pipe.latency.n}), publish → findings event: p50 ${pipe.latency.p50.toFixed(0)} ms, p95 ${pipe.latency.p95.toFixed(0)} ms, p99 ${pipe.latency.p99.toFixed(0)} ms`,
  );

  const report = {
    run: RUN,
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, node: process.version },
    model: { dir: versionDir, variants },
    raw,
    bestBatch: Number(bestBatch),
    a_raw_best: bestRaw,
    b_inference_service: inference,
    b_over_a: inference / bestRaw,
    b_variants: variantsServed,
    d_stages: stages,
    d_ideal: ideal,
    c_pipeline: pipe.throughput,
    c_over_d: pipe.throughput / ideal,
    latency_ms: pipe.latency,
    goals: { b_over_a: 0.95, c_over_d: 0.9, p99_ms: 400 },
  };
  const file = path.join(REPO_ROOT, '.data', 'bench', `${RUN}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  say(`written ${path.relative(REPO_ROOT, file)}`);
}

main().catch((error) => {
  process.stderr.write(`benchmark failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
