/**
 * The co-located topology (`thorax pipeline`, `THORAX_TOPOLOGY=pipeline npm start`): ingest, preprocess and inference
 * in one process with the images and tensors hand-offs in memory, results beside it. Driven only
 * through the public surfaces: raw files on thorax.studies.v1, findings on thorax.findings.v1, the
 * DLQ topics, results' REST API, each stage's /readyz and /metrics. It must keep the contract of
 * separate processes: one findings event per input, coded errors naming the failing stage, nothing
 * lost when the process is killed with work in flight.
 */
import { decodeFindingsEvent, type FindingsEvent } from '@thorax/contracts';
import {
  collect,
  collectOncePerId,
  countByKey,
  expectOncePerId,
  produce,
  REPO_ROOT,
  type RunningService,
  servicePorts,
  startBuiltService,
  startServices,
  syntheticChestXray,
  testBrokers,
  testKafka,
  waitForService,
} from '@thorax/testing';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

jest.setTimeout(300_000);

const RUN = `colo-${Date.now().toString(36)}`;
const PORTS = servicePorts(Number(process.env['THORAX_E2E_COLOCATED_PORT_BASE'] ?? 18180));
const kafka = testKafka('thorax-e2e-colocated');
const logDir = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
const env = {
  KAFKA_BROKERS: testBrokers().join(','),
  LOG_LEVEL: 'info',
  MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
  RESULTS_DATA_DIR: 'memory://',
  INFERENCE_PROVIDERS: 'cpu',
  INGEST_HTTP_PORT: String(PORTS.ingest),
  PREPROCESS_HTTP_PORT: String(PORTS.preprocess),
  INFERENCE_HTTP_PORT: String(PORTS.inference),
  // Ingest's own listeners, away from npm start's defaults.
  GRPC_PORT: String(PORTS.ingest + 20),
  INGEST_DIMSE_PORT: '0',
};

let results: RunningService;
let pipeline: RunningService | null = null;

function startPipeline(): RunningService {
  return startBuiltService('pipeline', env, logDir, path.join(REPO_ROOT, 'deploy', 'images', 'pipeline.js'));
}

async function ready(p: RunningService): Promise<void> {
  for (const port of [PORTS.ingest, PORTS.preprocess, PORTS.inference]) {
    await waitForService(p, `http://127.0.0.1:${port}/readyz`, 120_000);
  }
}

/** Sum of a counter's samples whose labels include all of `labels`, from a /metrics text. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.split(' ').pop());
  }
  return total;
}

async function highWatermarks(topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((sum, o) => sum + Number(o.high), 0);
  } finally {
    await admin.disconnect();
  }
}

beforeAll(async () => {
  const [r] = (await startServices({ ports: PORTS, env, logDir, names: ['results'] })).values();
  results = r!;
  pipeline = startPipeline();
  await ready(pipeline);
});

afterAll(async () => {
  const codes = await Promise.all([pipeline?.stop(), results.stop()]);
  expect(codes).toEqual([0, 0]);
});

describe('co-located stages (thorax pipeline)', () => {
  const cases: { id: string; value: Buffer; headers?: Record<string, string>; expect: { status: 'ok' } | { code: string; stage: string } }[] = [];
  const events = new Map<string, FindingsEvent>();
  let intermediateBefore = 0;

  beforeAll(async () => {
    intermediateBefore = (await highWatermarks('thorax.images.v1')) + (await highWatermarks('thorax.tensors.v1'));
    const png = await syntheticChestXray({ width: 600, height: 520, seed: 71 });
    const jpeg = await syntheticChestXray({ width: 512, height: 640, seed: 72, format: 'jpeg' });
    const tiny = await syntheticChestXray({ width: 48, height: 32, seed: 73 });
    cases.push(
      { id: `${RUN}-png`, value: png, headers: { 'content-type': 'image/png', 'thorax-study-uid': '1.2.826.0.1.3680043.8.498.171' }, expect: { status: 'ok' } },
      { id: `${RUN}-jpeg`, value: jpeg, expect: { status: 'ok' } },
      { id: `${RUN}-random`, value: randomBytes(2048), headers: { 'content-type': 'image/png' }, expect: { code: 'UNSUPPORTED_MEDIA_TYPE', stage: 'ingest' } },
      { id: `${RUN}-truncated`, value: png.subarray(0, Math.floor(png.length / 2)), expect: { code: 'CORRUPT_IMAGE', stage: 'preprocess' } },
      { id: `${RUN}-tiny`, value: tiny, expect: { code: 'IMAGE_TOO_SMALL', stage: 'preprocess' } },
    );
    await produce(kafka, 'thorax.studies.v1', cases.map((c) => ({ key: c.id, value: c.value, headers: c.headers ?? {} })));
    const records = await collectOncePerId(kafka, 'thorax.findings.v1', cases.map((c) => c.id), 120_000);
    for (const [id, record] of records) events.set(id, decodeFindingsEvent(record.value!));
  });

  it('analyses valid images and answers bad ones with coded errors naming the failing stage', () => {
    for (const c of cases) {
      const event = events.get(c.id);
      if ('status' in c.expect) {
        expect({ id: c.id, status: event?.status, labels: event?.findings.length }).toEqual({ id: c.id, status: 'ok', labels: 14 });
      } else {
        expect({ id: c.id, status: event?.status, code: event?.error?.code, stage: event?.error?.stage }).toEqual({
          id: c.id,
          status: 'error',
          ...c.expect,
        });
      }
    }
    expect(events.get(`${RUN}-png`)?.study.studyUid).toBe('1.2.826.0.1.3680043.8.498.171');
  });

  it('dead-letters the record that entered the process (the raw study), with the failing stage in its headers', async () => {
    const failed = cases.filter((c) => !('status' in c.expect));
    const dlq = await collectOncePerId(kafka, 'thorax.studies.v1.dlq', failed.map((c) => c.id), 30_000);
    for (const c of failed) {
      const record = dlq.get(c.id);
      const want = c.expect as { code: string; stage: string };
      expect({ code: record?.headers['thorax-error-code'], stage: record?.headers['thorax-failed-stage'] }).toEqual(want);
      // The original bytes, so a replay after a fix starts from the beginning.
      expect(record?.value?.equals(c.value)).toBe(true);
    }
  });

  it('hands images and tensors over in memory: nothing is written to their topics', async () => {
    const after = (await highWatermarks('thorax.images.v1')) + (await highWatermarks('thorax.tensors.v1'));
    expect(after).toBe(intermediateBefore);
  });

  it('keeps each stage observable on its own port', async () => {
    for (const [port, service, topic] of [
      [PORTS.ingest, 'ingest', 'thorax.studies.v1'],
      [PORTS.preprocess, 'preprocess', 'thorax.images.v1'],
      [PORTS.inference, 'inference', 'thorax.tensors.v1'],
    ] as const) {
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect({ service, ok: sample(text, 'thorax_messages_total', { service, topic, outcome: 'ok' }) > 0 }).toEqual({ service, ok: true });
    }
  });

  it('stores the results', async () => {
    for (const c of cases) {
      let status = 0;
      for (let i = 0; i < 40 && status !== 200; i += 1) {
        status = (await fetch(`http://127.0.0.1:${PORTS.results}/v1/findings/${encodeURIComponent(c.id)}`)).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 250));
      }
      expect({ id: c.id, status }).toEqual({ id: c.id, status: 200 });
    }
  });

  it('loses nothing when the process is killed with images in flight', async () => {
    const png = await syntheticChestXray({ width: 1024, height: 1024, seed: 74 });
    const ids = Array.from({ length: 150 }, (_, i) => `${RUN}-burst-${i}`);
    // Kill -9 once some, not all, findings are out: the rest are in memory or not fetched yet.
    const watching = collect(kafka, 'thorax.findings.v1', (rs) => rs.filter((r) => r.key?.startsWith(`${RUN}-burst-`)).length >= 10, 90_000, { quietMs: 0 });
    await new Promise((r) => setTimeout(r, 4000)); // the reader joins its group first
    for (let i = 0; i < ids.length; i += 10) {
      // A few MB per request, well under the broker's request limit.
      await produce(kafka, 'thorax.studies.v1', ids.slice(i, i + 10).map((id) => ({ key: id, value: png, headers: { 'content-type': 'image/png' } })));
    }
    const seen = await watching;
    const before = [...countByKey(seen, ids).values()].filter((n) => n > 0).length;
    expect(before).toBeLessThan(ids.length);
    pipeline!.process.kill('SIGKILL');
    await pipeline!.stop();
    pipeline = startPipeline();
    await ready(pipeline);
    const all = await collect(kafka, 'thorax.findings.v1', (rs) => [...countByKey(rs, ids).values()].every((n) => n > 0), 120_000);
    // Read committed: the findings of a transaction the kill aborted are never seen, so each input
    // has exactly one event (docs/contract.md "Delivery guarantees").
    expectOncePerId(all, ids, 'findings events');
    for (const id of ids) {
      const event = all.filter((r) => r.key === id).map((r) => decodeFindingsEvent(r.value!));
      expect(event.every((e) => e.status === 'ok')).toBe(true);
    }
    process.stdout.write(`co-located kill -9: ${before}/${ids.length} findings out before the kill, all ${ids.length} after the restart\n`);
  });
});
