/**
 * The whole pipeline through its public surfaces only: raw files published to thorax.studies.v1
 * with a plain Kafka client, findings read back from thorax.findings.v1, the DLQ topics, results'
 * REST API and gRPC service. Real broker, real services (built dist/), real ONNX model.
 */
import { credentials } from '@grpc/grpc-js';
import {
  CHESTXRAY14_LABELS,
  decodeFindingsEvent,
  type FindingsEvent,
  FindingsStatus,
  type GetFindingsResponse,
  ResultsServiceClient,
} from '@thorax/contracts';
import {
  collectOncePerId,
  produce,
  REPO_ROOT,
  type RunningService,
  type ServiceName,
  servicePorts,
  startServices,
  syntheticChestXray,
  testBrokers,
  testKafka,
} from '@thorax/testing';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import sharp from 'sharp';

jest.setTimeout(240_000);

const RUN = `e2e-${Date.now().toString(36)}`;
// Ports away from `npm start`'s defaults, so both can run on one machine, and below Linux's
// ephemeral range (32768+), where an outgoing connection could hold one; THORAX_E2E_PORT_BASE
// moves them (results, ingest, preprocess, inference on base..base+3; results gRPC on base+10).
const PORTS = servicePorts(Number(process.env['THORAX_E2E_PORT_BASE'] ?? 18080));
const kafka = testKafka('thorax-e2e');
const services: RunningService[] = [];

interface Case {
  id: string;
  value: Buffer | null;
  headers?: Record<string, string>;
  expect: { status: 'ok' } | { status: 'error'; code: string; stage: string; dlq: string };
}

const cases: Case[] = [];
let events: Map<string, FindingsEvent[]>;

beforeAll(async () => {
  const logDir = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
  const common = {
    KAFKA_BROKERS: testBrokers().join(','),
    LOG_LEVEL: 'info',
    MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
    RESULTS_DATA_DIR: 'memory://',
    INFERENCE_PROVIDERS: 'cpu',
  };
  services.push(...(await startServices({ ports: PORTS, env: common, logDir })).values());

  const png = await syntheticChestXray({ width: 600, height: 520, seed: 7 });
  const jpeg = await syntheticChestXray({ width: 512, height: 640, seed: 8, format: 'jpeg' });
  const png16 = await syntheticChestXray({ width: 400, height: 400, seed: 9, bits: 16 });
  const tiny = await syntheticChestXray({ width: 48, height: 32, seed: 10 });
  const gif = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#777' } }).gif().toBuffer();
  const dicomish = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), randomBytes(256)]);
  const study = { 'thorax-study-uid': '1.2.826.0.1.3680043.8.498.77', 'thorax-accession': 'ACC-77', 'thorax-patient-id': 'PAT-77' };
  const ingestError = (code: string) => ({ status: 'error' as const, code, stage: 'ingest', dlq: 'thorax.studies.v1.dlq' });
  const preprocessError = (code: string) => ({ status: 'error' as const, code, stage: 'preprocess', dlq: 'thorax.images.v1.dlq' });
  cases.push(
    { id: `${RUN}-png`, value: png, headers: { 'content-type': 'image/png', ...study }, expect: { status: 'ok' } },
    { id: `${RUN}-jpeg-sniffed`, value: jpeg, expect: { status: 'ok' } },
    { id: `${RUN}-png16`, value: png16, headers: { 'content-type': 'image/png', 'thorax-priority': 'stat' }, expect: { status: 'ok' } },
    { id: `${RUN}-random`, value: randomBytes(4096), headers: { 'content-type': 'image/png' }, expect: ingestError('UNSUPPORTED_MEDIA_TYPE') },
    { id: `${RUN}-empty`, value: Buffer.alloc(0), expect: ingestError('EMPTY_PAYLOAD') },
    { id: `${RUN}-gif`, value: gif, expect: ingestError('UNSUPPORTED_MEDIA_TYPE') },
    { id: `${RUN}-mismatch`, value: jpeg, headers: { 'content-type': 'image/png' }, expect: ingestError('CONTENT_TYPE_MISMATCH') },
    { id: `${RUN}-dicom`, value: dicomish, expect: ingestError('CORRUPT_IMAGE') },
    { id: `${RUN}-truncated`, value: png.subarray(0, Math.floor(png.length / 2)), expect: preprocessError('CORRUPT_IMAGE') },
    { id: `${RUN}-tiny`, value: tiny, expect: preprocessError('IMAGE_TOO_SMALL') },
  );
  await produce(kafka, 'thorax.studies.v1', cases.map((c) => ({ key: c.id, value: c.value, headers: c.headers ?? {} })));

  const ids = new Set(cases.map((c) => c.id));
  // Exactly one findings event per input, after a quiet period: a duplicate or a loss fails.
  const records = await collectOncePerId(kafka, 'thorax.findings.v1', ids, 150_000);
  events = new Map();
  for (const [key, r] of records) events.set(key, [decodeFindingsEvent(r.value)]);
});

afterAll(async () => {
  const codes = await Promise.all(services.map((s) => s.stop()));
  // Every service drains and exits cleanly on SIGTERM.
  expect(codes).toEqual(services.map(() => 0));
});

describe('PNG and JPEG studies through the pipeline', () => {
  it('ends every input in exactly one findings event with its id', () => {
    for (const c of cases) {
      expect({ id: c.id, count: events.get(c.id)?.length ?? 0 }).toEqual({ id: c.id, count: 1 });
    }
  });

  it('reports the 14 ChestX-ray14 labels with probabilities in [0, 1] for valid images', () => {
    for (const c of cases.filter((x) => x.expect.status === 'ok')) {
      const [event] = events.get(c.id) ?? [];
      expect(event?.status).toBe('ok');
      expect(event?.error).toBeNull();
      expect(event?.findings.map((f) => f.label)).toEqual([...CHESTXRAY14_LABELS]);
      for (const f of event?.findings ?? []) {
        expect(f.probability).toBeGreaterThanOrEqual(0);
        expect(f.probability).toBeLessThanOrEqual(1);
        expect(f.positive).toBe(f.probability >= f.threshold);
      }
      expect(event?.positives).toEqual(event?.findings.filter((f) => f.positive).map((f) => f.label));
      expect(event?.model).toMatchObject({ name: 'thorax-tiny-cnn', provider: 'cpu' });
      expect(event?.model?.sha256).toMatch(/^[0-9a-f]{64}$/);
      // The committed model says what it is: a demonstration trained on synthetic images.
      expect(event?.model?.provenance).toEqual({
        data: 'synthetic',
        clinical: false,
        dataset: 'thorax-synthetic-cxr',
        note: 'Demonstration model trained on synthetic images; not for clinical use.',
      });
      expect(event?.timing.latencyMs).toBeGreaterThanOrEqual(0);
    }
    const [withStudy] = events.get(`${RUN}-png`) ?? [];
    expect(withStudy?.study).toMatchObject({ studyUid: '1.2.826.0.1.3680043.8.498.77', accession: 'ACC-77' });
  });

  it('answers junk with coded error events, never NaN', () => {
    for (const c of cases) {
      if (c.expect.status !== 'error') continue;
      const [event] = events.get(c.id) ?? [];
      expect({ id: c.id, status: event?.status, code: event?.error?.code, stage: event?.error?.stage }).toEqual({
        id: c.id,
        status: 'error',
        code: c.expect.code,
        stage: c.expect.stage,
      });
      expect(event?.findings).toEqual([]);
    }
  });

  it('dead-letters each rejected record, with its error headers, on the failing stage topic', async () => {
    const rejected = cases.filter((c) => c.expect.status === 'error');
    const byTopic = new Map<string, Case[]>();
    for (const c of rejected) if (c.expect.status === 'error') byTopic.set(c.expect.dlq, [...(byTopic.get(c.expect.dlq) ?? []), c]);
    for (const [topic, expected] of byTopic) {
      const want = new Set(expected.map((c) => c.id));
      const records = await collectOncePerId(kafka, topic, want, 30_000);
      for (const c of expected) {
        const record = records.get(c.id);
        expect(record?.headers['thorax-error-code']).toBe(c.expect.status === 'error' ? c.expect.code : '');
        expect(record?.headers['thorax-failed-stage']).toBe(c.expect.status === 'error' ? c.expect.stage : '');
      }
    }
  });

  it('stores each result, readable over REST', async () => {
    for (const c of cases) {
      const url = `http://127.0.0.1:${PORTS.results}/v1/findings/${encodeURIComponent(c.id)}`;
      let body: FindingsEvent | null = null;
      for (let i = 0; i < 40 && !body; i += 1) {
        const res = await fetch(url);
        if (res.ok) body = (await res.json()) as FindingsEvent;
        else await new Promise((r) => setTimeout(r, 250));
      }
      const [event] = events.get(c.id) ?? [];
      expect(body).toMatchObject({ id: c.id, status: event?.status, model: event?.model ?? null, findings: event?.findings, error: event?.error });
    }
    const missing = await fetch(`http://127.0.0.1:${PORTS.results}/v1/findings/${RUN}-never-sent`);
    expect(missing.status).toBe(404);
  });

  it('serves the same result over gRPC', async () => {
    const client = new ResultsServiceClient(`127.0.0.1:${PORTS.resultsGrpc}`, credentials.createInsecure());
    try {
      const id = `${RUN}-png`;
      const response = await new Promise<GetFindingsResponse>((resolve, reject) =>
        client.getFindings({ id, modelVersion: '' }, (error, value) => (error ? reject(error) : resolve(value))),
      );
      const [event] = events.get(id) ?? [];
      expect(response.result?.id).toBe(id);
      expect(response.result?.status).toBe(FindingsStatus.FINDINGS_STATUS_OK);
      expect(response.result?.findings.map((f) => f.label)).toEqual([...CHESTXRAY14_LABELS]);
      expect(response.result?.findings[1]?.probability).toBeCloseTo(event?.findings[1]?.probability ?? -1, 6);
      expect(response.result?.model?.provenance).toEqual({ ...event?.model?.provenance, dataset: event?.model?.provenance?.dataset ?? '' });
      expect(response.result?.model?.provenance).toMatchObject({ data: 'synthetic', clinical: false });
    } finally {
      client.close();
    }
  });

  it('keeps every service alive and ready after the junk', async () => {
    for (const s of services) {
      expect(s.process.exitCode).toBeNull();
      const res = await fetch(`http://127.0.0.1:${PORTS[s.name as ServiceName]}/readyz`);
      expect(res.status).toBe(200);
    }
  });
});
