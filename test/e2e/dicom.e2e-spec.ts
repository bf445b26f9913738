/**
 * DICOM (and the rest of the imaging fixture corpus) through the whole pipeline, public surfaces
 * only: every valid fixture from test/fixtures/imaging is published raw to thorax.studies.v1 and
 * must end in an ok findings event; every hostile fixture must end in an error event with its
 * documented code and stage, and in the failing stage's DLQ; the services must keep serving.
 * Real broker, real services (built dist/), real ONNX model.
 */
import { decodeFindingsEvent, type FindingsEvent, PreprocessedImage } from '@thorax/contracts';
import {
  collectOncePerId,
  type PlainRecord,
  produce,
  REPO_ROOT,
  type RunningService,
  type ServiceName,
  servicePorts,
  startServices,
  testBrokers,
  testKafka,
} from '@thorax/testing';
import { readFileSync } from 'node:fs';
import path from 'node:path';

jest.setTimeout(300_000);

const RUN = `dicom-${Date.now().toString(36)}`;
// Ports of their own, so this suite can share a machine with the others and with `npm start`:
// results, ingest, preprocess, inference on base..base+3; results gRPC on base+10.
const BASE = Number(process.env['THORAX_E2E_DICOM_PORT_BASE'] ?? 26080);
const PORTS = servicePorts(BASE);
const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'imaging');
const kafka = testKafka('thorax-e2e-dicom');
const services: RunningService[] = [];

interface Manifest {
  valid: { file: string; name: string; frames?: number }[];
  hostile: { file: string; code: string; stage: string; headers?: Record<string, string> }[];
}
const manifest = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as Manifest;

interface Case {
  id: string;
  file: string;
  headers: Record<string, string>;
  expect: { status: 'ok' } | { status: 'error'; code: string; stage: string };
}

const idOf = (file: string, suffix = '') => `${RUN}-${path.basename(file)}${suffix}`;
const cases: Case[] = [
  ...manifest.valid.map((v) => ({ id: idOf(v.file), file: v.file, headers: {}, expect: { status: 'ok' as const } })),
  ...manifest.hostile.map((h) => ({
    id: idOf(h.file),
    file: h.file,
    headers: h.headers ?? {},
    expect: { status: 'error' as const, code: h.code, stage: h.stage },
  })),
];
// DICOM tags win over the PACS headers for the same field.
const withHeaders = cases.find((c) => c.file === 'valid/mono1-explicit-le.dcm') as Case;
withHeaders.headers = { 'thorax-study-uid': '9.9.9.9', 'thorax-accession': 'HEADER-ACC', 'thorax-patient-id': 'HEADER-PAT' };

let events: Map<string, FindingsEvent[]>;

function byKey(records: PlainRecord[], ids: Set<string>): Map<string, PlainRecord[]> {
  const map = new Map<string, PlainRecord[]>();
  for (const r of records) if (r.key && ids.has(r.key)) map.set(r.key, [...(map.get(r.key) ?? []), r]);
  return map;
}

async function findingsFor(ids: Set<string>, timeoutMs: number): Promise<Map<string, FindingsEvent[]>> {
  // Exactly one event per id, after a quiet period: a duplicate fails the suite.
  const records = await collectOncePerId(kafka, 'thorax.findings.v1', ids, timeoutMs);
  const out = new Map<string, FindingsEvent[]>();
  for (const [key, r] of records) out.set(key, [decodeFindingsEvent(r.value)]);
  return out;
}

beforeAll(async () => {
  const logDir = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
  const common = {
    KAFKA_BROKERS: testBrokers().join(','),
    LOG_LEVEL: 'info',
    MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
    RESULTS_DATA_DIR: 'memory://',
    INFERENCE_PROVIDERS: 'cpu',
    PREPROCESS_DECODE_WORKERS: '2',
  };
  services.push(...(await startServices({ ports: PORTS, env: common, logDir })).values());
  await produce(
    kafka,
    'thorax.studies.v1',
    cases.map((c) => ({ key: c.id, value: readFileSync(path.join(FIXTURES, c.file)), headers: c.headers })),
  );
  events = await findingsFor(new Set(cases.map((c) => c.id)), 200_000);
});

afterAll(async () => {
  const codes = await Promise.all(services.map((s) => s.stop()));
  expect(codes).toEqual(services.map(() => 0));
});

describe('DICOM and the imaging corpus through the pipeline', () => {
  it('ends every input in exactly one findings event', () => {
    for (const c of cases) expect({ id: c.id, count: events.get(c.id)?.length ?? 0 }).toEqual({ id: c.id, count: 1 });
  });

  it('analyses every valid file (all transfer syntaxes and photometric interpretations)', () => {
    for (const c of cases.filter((x) => x.expect.status === 'ok')) {
      const [event] = events.get(c.id) ?? [];
      expect({ file: c.file, status: event?.status, error: event?.error ?? null }).toEqual({ file: c.file, status: 'ok', error: null });
      expect(event?.findings).toHaveLength(14);
    }
  });

  it('answers each hostile file with its documented code at its stage', () => {
    for (const c of cases) {
      if (c.expect.status !== 'error') continue;
      const [event] = events.get(c.id) ?? [];
      expect({ file: c.file, status: event?.status, code: event?.error?.code, stage: event?.error?.stage }).toEqual({
        file: c.file,
        status: 'error',
        code: c.expect.code,
        stage: c.expect.stage,
      });
      expect(event?.findings).toEqual([]);
    }
  });

  it('fills the study from DICOM tags, over the PACS headers', () => {
    const [event] = events.get(withHeaders.id) ?? [];
    expect(event?.study).toMatchObject({
      studyUid: '1.2.826.0.1.3680043.8.498.4.1.3',
      seriesUid: '1.2.826.0.1.3680043.8.498.4.2.3',
      accession: 'ACC00003',
      patientId: 'PAT00003',
      viewPosition: 'AP',
    });
    // A refused study still names its study, so an EHR can tell "not analysed" for it.
    const [lateral] = events.get(idOf('hostile/view-ll.dcm')) ?? [];
    expect(lateral?.study).toMatchObject({ viewPosition: 'LL', accession: 'ACC00103' });
  });

  it('publishes wire images that say which frame and photometric interpretation they came from', async () => {
    const wanted = new Set([
      idOf('valid/mono2-multiframe.dcm'),
      idOf('valid/mono1-explicit-le.dcm'),
      idOf('valid/mono2-explicit-le-window.dcm'),
      idOf('valid/j2k-lossless.dcm'),
      idOf('valid/jpeg-ls-multiframe.dcm'),
    ]);
    const records = byKey([...(await collectOncePerId(kafka, 'thorax.tensors.v1', wanted, 60_000)).values()], wanted);
    const image = (file: string) => PreprocessedImage.decode(records.get(idOf(file))?.[0]?.value ?? Buffer.alloc(0));
    expect(image('valid/mono2-multiframe.dcm').source).toMatchObject({ frames: 3, frameIndex: 0, photometricInterpretation: 'MONOCHROME2', width: 320, height: 384 });
    expect(image('valid/jpeg-ls-multiframe.dcm').source).toMatchObject({ frames: 3, frameIndex: 0 });
    expect(image('valid/mono1-explicit-le.dcm').source).toMatchObject({ photometricInterpretation: 'MONOCHROME1', bitsStored: 12, contentType: 'application/dicom' });
    // Lossless encodings of one image give the same wire bytes.
    const reference = Buffer.from(image('valid/mono2-explicit-le-window.dcm').pixels);
    expect(reference).toHaveLength(256 * 256);
    expect(Buffer.from(image('valid/j2k-lossless.dcm').pixels).equals(reference)).toBe(true);
    expect(Buffer.from(image('valid/mono2-multiframe.dcm').pixels).equals(reference)).toBe(true);
  });

  it('dead-letters each rejected file on the failing stage topic with its error headers', async () => {
    for (const [stage, topic] of [
      ['ingest', 'thorax.studies.v1.dlq'],
      ['preprocess', 'thorax.images.v1.dlq'],
    ] as const) {
      const expected = cases.filter((c) => c.expect.status === 'error' && c.expect.stage === stage);
      const want = new Set(expected.map((c) => c.id));
      const records = byKey([...(await collectOncePerId(kafka, topic, want, 60_000)).values()], want);
      for (const c of expected) {
        const headers = records.get(c.id)?.[0]?.headers ?? {};
        expect({ file: c.file, code: headers['thorax-error-code'], stage: headers['thorax-failed-stage'] }).toEqual({
          file: c.file,
          code: c.expect.status === 'error' ? c.expect.code : '',
          stage,
        });
      }
    }
  });

  it('keeps serving after the hostile corpus', async () => {
    for (const s of services) {
      expect(s.process.exitCode).toBeNull();
      expect((await fetch(`http://127.0.0.1:${PORTS[s.name as ServiceName]}/readyz`)).status).toBe(200);
    }
    const after = [idOf('valid/jpeg-ls-lossless.dcm', '-after'), idOf('valid/rle-mono1.dcm', '-after')];
    await produce(kafka, 'thorax.studies.v1', [
      { key: after[0] as string, value: readFileSync(path.join(FIXTURES, 'valid/jpeg-ls-lossless.dcm')) },
      { key: after[1] as string, value: readFileSync(path.join(FIXTURES, 'valid/rle-mono1.dcm')) },
    ]);
    const late = await findingsFor(new Set(after), 60_000);
    for (const id of after) expect({ id, status: late.get(id)?.[0]?.status }).toEqual({ id, status: 'ok' });
  });
});
