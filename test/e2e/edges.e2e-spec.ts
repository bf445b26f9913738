/**
 * Ingest's HTTP and gRPC edges and the claim-check, through public surfaces only: a ~63 MB
 * multi-frame DX instance posted to POST /v1/predict goes to the object store, thorax.studies.v1
 * carries only its reference, the findings come back synchronously, results stores them and the
 * object is removed; POST /v1/studies answers 202 after the Kafka ack; error events map to HTTP
 * statuses; an oversize body is 413 and a short timeout 504; gRPC IngestService through grpcurl
 * (reflection, health, SubmitStudy, Predict). Real broker, the four built services, real model.
 */
import { decodeFindingsEvent, type FindingsEvent } from '@thorax/contracts';
import { collect, REPO_ROOT, type RunningService, servicePorts, startServices, testBrokers, testKafka } from '@thorax/testing';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';

jest.setTimeout(600_000);

const RUN = `edges-${Date.now().toString(36)}`;
// Ports of their own: results, ingest, preprocess, inference on base..base+3; results gRPC on
// base+10, ingest gRPC on base+11; below the kernel's ephemeral range (32768-60999), where an
// outgoing connection can hold a port.
const BASE = Number(process.env['THORAX_E2E_EDGES_PORT_BASE'] ?? 17080);
const PORTS = servicePorts(BASE);
const INGEST = `http://127.0.0.1:${PORTS.ingest}`;
const RESULTS = `http://127.0.0.1:${PORTS.results}`;
const INGEST_GRPC = `127.0.0.1:${BASE + 11}`;
const OBJECT_MAX = 256 * 1024 * 1024;
const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'imaging');
const objects = mkdtempSync(path.join(tmpdir(), 'thorax-edges-objects-'));
const kafka = testKafka('thorax-e2e-edges');
let services: RunningService[] = [];

/** Files under the object store's studies/ prefix (claim-checked inputs still kept). */
function studyObjects(): string[] {
  const dir = path.join(objects, 'studies');
  try {
    return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(path.join(dir, f)).isFile());
  } catch {
    return [];
  }
}

/**
 * A multi-frame DX for presentation, explicit VR little endian, 16-bit (12 stored), written by
 * hand: frame 0 has a chest-like pattern, the others are flat. `frames` × rows × cols × 2 bytes.
 */
function multiFrameDx(sopInstanceUid: string, rows: number, cols: number, frames: number): Buffer {
  const element = (group: number, elem: number, vr: string, value: Buffer): Buffer => {
    const padded = value.length % 2 === 0 ? value : Buffer.concat([value, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
    const long = ['OB', 'OW', 'OF', 'SQ', 'UT', 'UN'].includes(vr);
    const header = Buffer.alloc(long ? 12 : 8);
    header.writeUInt16LE(group, 0);
    header.writeUInt16LE(elem, 2);
    header.write(vr, 4, 'latin1');
    if (long) header.writeUInt32LE(padded.length, 8);
    else header.writeUInt16LE(padded.length, 6);
    return Buffer.concat([header, padded]);
  };
  const str = (s: string) => Buffer.from(s, 'latin1');
  const us = (n: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(n);
    return b;
  };
  const sopClass = '1.2.840.10008.5.1.4.1.1.1.1';
  const metaBody = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    element(0x0002, 0x0002, 'UI', str(sopClass)),
    element(0x0002, 0x0003, 'UI', str(sopInstanceUid)),
    element(0x0002, 0x0010, 'UI', str('1.2.840.10008.1.2.1')),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(metaBody.length);
  const pixels = Buffer.alloc(rows * cols * frames * 2);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < cols; x++) {
      const dx = (x - cols / 2) / (cols / 2);
      const dy = (y - rows / 2) / (rows / 2);
      const lung = (dx + 0.45) ** 2 / 0.1 + dy ** 2 / 0.5 < 1 || (dx - 0.45) ** 2 / 0.1 + dy ** 2 / 0.5 < 1;
      pixels.writeUInt16LE(lung ? 600 + ((x * 7 + y * 3) % 200) : 2600 + ((x + y) % 300), (y * cols + x) * 2);
    }
  }
  const dataset = Buffer.concat([
    element(0x0008, 0x0016, 'UI', str(sopClass)),
    element(0x0008, 0x0018, 'UI', str(sopInstanceUid)),
    element(0x0008, 0x0050, 'SH', str(`ACC-${RUN}`.slice(0, 16))),
    element(0x0008, 0x0060, 'CS', str('DX')),
    element(0x0010, 0x0020, 'LO', str('EDGE-PATIENT')),
    element(0x0018, 0x0015, 'CS', str('CHEST')),
    element(0x0018, 0x5101, 'CS', str('PA')),
    element(0x0020, 0x000d, 'UI', str(`${sopInstanceUid}.1`)),
    element(0x0020, 0x000e, 'UI', str(`${sopInstanceUid}.2`)),
    element(0x0028, 0x0002, 'US', us(1)),
    element(0x0028, 0x0004, 'CS', str('MONOCHROME2')),
    element(0x0028, 0x0008, 'IS', str(String(frames))),
    element(0x0028, 0x0010, 'US', us(rows)),
    element(0x0028, 0x0011, 'US', us(cols)),
    element(0x0028, 0x0100, 'US', us(16)),
    element(0x0028, 0x0101, 'US', us(12)),
    element(0x0028, 0x0102, 'US', us(11)),
    element(0x0028, 0x0103, 'US', us(0)),
    element(0x7fe0, 0x0010, 'OW', pixels),
  ]);
  return Buffer.concat([Buffer.alloc(128), str('DICM'), element(0x0002, 0x0000, 'UL', groupLength), metaBody, dataset]);
}

async function post(route: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${INGEST}${route}`, { method: 'POST', body: new Uint8Array(body), headers });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function storedResult(id: string, timeoutMs = 180_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${RESULTS}/v1/findings/${encodeURIComponent(id)}`);
    if (res.status === 200) return (await res.json()) as Record<string, unknown>;
    if (Date.now() > deadline) throw new Error(`no stored result for ${id}: ${res.status}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function until(what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(async () => {
  const logDir = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
  const env: Record<string, string> = {
    KAFKA_BROKERS: testBrokers().join(','),
    LOG_LEVEL: 'info',
    MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
    RESULTS_DATA_DIR: 'memory://',
    INFERENCE_PROVIDERS: 'cpu',
    OBJECT_STORE_URL: `file://${objects}`,
    INGEST_OBJECT_MAX_BYTES: String(OBJECT_MAX),
    // Ingest's gRPC port (startServices gives results its own).
    GRPC_PORT: String(BASE + 11),
  };
  services = [...(await startServices({ ports: PORTS, env, logDir })).values()];
  // Predict needs the findings follower positioned: /readyz does not wait for it, health does.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const small = await post('/v1/predict?timeoutMs=1', readFileSync(path.join(FIXTURES, 'valid', 'grey8.png')), { 'content-type': 'image/png' });
    if (small.status !== 503) break;
    if (Date.now() > deadline) throw new Error('predict never became available');
    await new Promise((r) => setTimeout(r, 500));
  }
});

afterAll(async () => {
  await Promise.all(services.map((s) => s.stop()));
  rmSync(objects, { recursive: true, force: true });
});

describe('claim-check', () => {
  it('takes a 63 MB multi-frame DX through the object store to a stored result, then removes the object', async () => {
    const uid = `1.2.826.0.1.3680043.8.498.${Date.now()}`;
    const dicom = multiFrameDx(uid, 2048, 1920, 8);
    expect(dicom.length).toBeGreaterThan(60_000_000);
    const started = Date.now();
    const answer = await post('/v1/predict', dicom, { 'content-type': 'application/dicom' });
    const predictMs = Date.now() - started;
    expect(answer.status).toBe(200);
    const event = answer.json as unknown as FindingsEvent;
    expect(event.id).toBe(uid);
    expect(event.status).toBe('ok');
    expect(event.findings).toHaveLength(14);
    expect(event.study.accession).toBe(`ACC-${RUN}`.slice(0, 16));

    // The studies record carries the reference, not the bytes.
    const studies = await collect(kafka, 'thorax.studies.v1', (rs) => rs.some((r) => r.key === uid), 60_000, { quietMs: 0 });
    const record = studies.find((r) => r.key === uid);
    expect(record?.value?.length ?? 0).toBe(0);
    expect(record?.headers['thorax-object-size']).toBe(String(dicom.length));
    expect(record?.headers['thorax-object-sha256']).toBe(createHash('sha256').update(dicom).digest('hex'));
    expect(record?.headers['thorax-object-uri']).toMatch(/^file:\/\/.*\/studies\//);
    expect(record?.headers['thorax-source']).toBe('http');

    // Stored once, then the object is gone.
    const stored = await storedResult(uid);
    expect(stored['status']).toBe('ok');
    await until('the claim-checked object to be removed', () => studyObjects().length === 0);
    process.stdout.write(`claim-check: ${dicom.length} bytes, predict answered in ${predictMs} ms, object removed after the result was stored\n`);
  });

  it('refuses a body over INGEST_OBJECT_MAX_BYTES with 413 before reading it', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        `${INGEST}/v1/studies`,
        { method: 'POST', headers: { 'content-type': 'application/dicom', 'content-length': String(OBJECT_MAX + 1) } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        },
      );
      req.on('error', reject);
      req.write(Buffer.alloc(1024));
    });
    expect(status).toBe(413);
    expect(studyObjects()).toEqual([]);
  });
});

describe('HTTP edge', () => {
  it('POST /v1/studies answers 202 with the id once Kafka has the record; the result is stored', async () => {
    const png = readFileSync(path.join(FIXTURES, 'valid', 'grey8.png'));
    const id = `${RUN}-png`;
    const answer = await post(`/v1/studies?id=${id}&accession=ACC-HTTP&priority=stat`, png, { 'content-type': 'image/png' });
    expect(answer.status).toBe(202);
    expect(answer.json).toEqual({ id, sizeBytes: png.length, claimCheck: false });
    const stored = await storedResult(id);
    expect(stored['status']).toBe('ok');
    expect((stored['study'] as Record<string, unknown>)['accession']).toBe('ACC-HTTP');
  });

  it('maps an error findings event to its HTTP status, the event as the body', async () => {
    const ct = await post(`/v1/predict?id=${RUN}-ct`, readFileSync(path.join(FIXTURES, 'hostile', 'modality-ct.dcm')), { 'content-type': 'application/dicom' });
    expect(ct.status).toBe(422);
    expect(ct.json['status']).toBe('error');
    expect(ct.json['error']).toMatchObject({ code: 'UNSUPPORTED_MODALITY', stage: 'ingest' });
    const gif = await post(`/v1/predict?id=${RUN}-gif`, readFileSync(path.join(FIXTURES, 'hostile', 'image.gif')), {});
    expect(gif.status).toBe(415);
    expect(gif.json['error']).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE' });
    const tiny = await post(`/v1/predict?id=${RUN}-tiny`, readFileSync(path.join(FIXTURES, 'hostile', 'png-tiny.png')), { 'content-type': 'image/png' });
    expect(tiny.status).toBe(422);
    expect(tiny.json['error']).toMatchObject({ code: 'IMAGE_TOO_SMALL', stage: 'preprocess' });
  });

  it('answers 504 with a clear body when the findings take longer than the timeout, 415 for an undeclared type, 400 for a bad timeout', async () => {
    const png = readFileSync(path.join(FIXTURES, 'valid', 'grey8.png'));
    const slow = await post(`/v1/predict?id=${RUN}-slow&timeoutMs=1`, png, { 'content-type': 'image/png' });
    expect(slow.status).toBe(504);
    expect(slow.json).toMatchObject({ error: { code: 'PREDICT_TIMEOUT' } });
    expect(String((slow.json['error'] as Record<string, unknown>)['message'])).toMatch(/will still be stored/);
    expect((await storedResult(`${RUN}-slow`))['status']).toBe('ok');
    expect((await post('/v1/studies', png, { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await post('/v1/predict?timeoutMs=soon', png, { 'content-type': 'image/png' })).status).toBe(400);
  });
});

describe('gRPC IngestService', () => {
  let grpcurl = '';
  beforeAll(() => {
    grpcurl = execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'grpc-tools.sh'), 'path', 'grpcurl'], { encoding: 'utf8', timeout: 900_000 }).trim();
  });
  const run = (args: string[]) => spawnSync(grpcurl, ['-plaintext', '-max-time', '60', ...args], { encoding: 'utf8', timeout: 90_000 });

  it('lists IngestService and health through reflection and reports SERVING', () => {
    const list = run([INGEST_GRPC, 'list']);
    expect(list.stdout).toMatch(/thorax\.v1\.IngestService/);
    expect(list.stdout).toMatch(/grpc\.health\.v1\.Health/);
    const health = run(['-d', '{"service":"thorax.v1.IngestService"}', INGEST_GRPC, 'grpc.health.v1.Health/Check']);
    expect(JSON.parse(health.stdout)).toEqual({ status: 'SERVING' });
  });

  it('SubmitStudy returns the id; Predict returns the findings; a refused image is INVALID_ARGUMENT with its code', async () => {
    const png = readFileSync(path.join(FIXTURES, 'valid', 'grey8.png')).toString('base64');
    const submit = run(['-d', JSON.stringify({ id: `${RUN}-grpc-submit`, contentType: 'image/png', data: png }), INGEST_GRPC, 'thorax.v1.IngestService/SubmitStudy']);
    expect(submit.status).toBe(0);
    expect(JSON.parse(submit.stdout)).toEqual({ id: `${RUN}-grpc-submit` });
    expect((await storedResult(`${RUN}-grpc-submit`))['status']).toBe('ok');

    const predict = run(['-d', JSON.stringify({ study: { id: `${RUN}-grpc-predict`, data: png, study: { accession: 'ACC-GRPC' } } }), INGEST_GRPC, 'thorax.v1.IngestService/Predict']);
    expect(predict.status).toBe(0);
    const result = (JSON.parse(predict.stdout) as { result: Record<string, unknown> }).result;
    expect(result['id']).toBe(`${RUN}-grpc-predict`);
    expect(result['status']).toBe('FINDINGS_STATUS_OK');
    expect(result['findings']).toHaveLength(14);

    const mr = readFileSync(path.join(FIXTURES, 'hostile', 'modality-mr.dcm')).toString('base64');
    const refused = run(['-d', JSON.stringify({ study: { id: `${RUN}-grpc-mr`, data: mr } }), INGEST_GRPC, 'thorax.v1.IngestService/Predict']);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/InvalidArgument/);
    expect(refused.stderr).toMatch(/UNSUPPORTED_MODALITY/);
  });
});

// The findings topic is read by results only through Kafka: nothing here bypasses it.
afterAll(async () => {
  const findings = await collect(kafka, 'thorax.findings.v1', () => true, 10_000, { quietMs: 2000 });
  const ours = findings.filter((r) => r.key?.startsWith(RUN) && r.value).map((r) => decodeFindingsEvent(r.value as Buffer));
  const perId = new Map<string, number>();
  for (const e of ours) perId.set(e.id, (perId.get(e.id) ?? 0) + 1);
  for (const [id, count] of perId) if (count !== 1) throw new Error(`${id}: ${count} findings events, expected exactly one`);
});
