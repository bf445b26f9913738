/**
 * The PACS edges of ingest end to end: dcmtk's echoscu/storescu against the DIMSE SCP, STOW-RS
 * multipart bodies from fetch and curl, and a real PACS (Orthanc with its DICOMweb plugin)
 * pushing studies by C-STORE and by STOW-RS from its REST API. Every accepted instance must end
 * in exactly one findings event and one stored result; every refused one in the right DIMSE
 * status or HTTP status and failure reason, and in no event at all. Real broker, real services.
 */
import { decodeFindingsEvent } from '@thorax/contracts';
import {
  collect,
  countByKey,
  expectOncePerId,
  REPO_ROOT,
  type RunningService,
  servicePorts,
  startServices,
  testBrokers,
  testKafka,
} from '@thorax/testing';
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

jest.setTimeout(240_000);

const run = promisify(execFile);
const RUN = Date.now().toString(36);
// Ports of this suite (20000-20999): pipeline on 20080-20083 (gRPC: results 20090, ingest 20091), DIMSE 20104, Orthanc 20042/20142;
// below the kernel's ephemeral range (32768-60999), where an outgoing connection can hold a port
// (Orthanc's DICOM port 41142 was once taken so).
const BASE = Number(process.env['THORAX_E2E_PACS_PORT_BASE'] ?? 20080);
const PORTS = servicePorts(BASE);
const DIMSE_PORT = BASE + 24;
const ORTHANC_HTTP = BASE - 38;
const ORTHANC_DICOM = BASE + 62;
const INGEST = `http://127.0.0.1:${PORTS.ingest}`;
const ORTHANC = `http://127.0.0.1:${ORTHANC_HTTP}`;
const STOW_MAX_BYTES = 8 * 1024 * 1024;
const WORK = path.join(REPO_ROOT, '.data', 'pacs-e2e', RUN);
const ORTHANC_ENV = {
  ...process.env,
  ORTHANC_STATE_DIR: path.join(WORK, 'orthanc'),
  ORTHANC_HTTP_PORT: String(ORTHANC_HTTP),
  ORTHANC_DICOM_PORT: String(ORTHANC_DICOM),
  THORAX_DIMSE_PORT: String(DIMSE_PORT),
  THORAX_DICOMWEB_URL: `${INGEST}/dicomweb/`,
};
const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'imaging', 'valid');
const kafka = testKafka('thorax-e2e-pacs');
const services: RunningService[] = [];

/** A UID of this run: 2.25 + a decimal derived from the run and a counter. */
let counter = 0;
const uid = () => `2.25.${parseInt(RUN, 36)}${String(++counter).padStart(4, '0')}`;

/** A copy of a fixture with new study/series/instance UIDs (and any other attribute changes). */
function instance(fixture: string, study: string, changes: Record<string, string> = {}): { file: string; sop: string } {
  const sop = uid();
  const file = path.join(WORK, `${sop}.dcm`);
  copyFileSync(path.join(FIXTURES, fixture), file);
  // One patient per study: a PACS (Orthanc) files a study under its patient.
  const attributes = { '0010,0020': `PAT-${study.slice(-6)}`, '0020,000D': study, '0020,000E': `${study}.1`, '0008,0018': sop, ...changes };
  execFileSync('dcmodify', ['-nb', ...Object.entries(attributes).flatMap(([tag, value]) => ['-i', `(${tag})=${value}`]), file]);
  return { file, sop };
}

function multipart(parts: Buffer[], boundary: string): Buffer {
  return Buffer.concat([
    ...parts.flatMap((p) => [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), p, Buffer.from('\r\n')]),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
}

async function stow(body: Buffer, options: { study?: string; contentType?: string } = {}): Promise<{ status: number; json: Record<string, { Value?: Record<string, { Value?: unknown[] }>[] }> }> {
  const response = await fetch(`${INGEST}/dicomweb/studies${options.study ? `/${options.study}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': options.contentType ?? 'multipart/related; type="application/dicom"; boundary=thorax-e2e', accept: 'application/dicom+json' },
    body,
  });
  return { status: response.status, json: (await response.json()) as never };
}

/** (instance UID, failure reason) of each FailedSOPSequence item; the instance UIDs of ReferencedSOPSequence. */
function storeResult(json: Awaited<ReturnType<typeof stow>>['json']): { failed: [unknown, unknown][]; stored: unknown[] } {
  const failed = (json['00081198']?.Value ?? []).map((item) => [item['00081155']?.Value?.[0] ?? null, item['00081197']?.Value?.[0]] as [unknown, unknown]);
  const stored = (json['00081199']?.Value ?? []).map((item) => item['00081155']?.Value?.[0]);
  return { failed, stored };
}

async function storescu(args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run('storescu', ['-v', ...args], { timeout: 60_000 });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

async function orthanc(method: string, route: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${ORTHANC}${route}`, { method, ...(body === undefined ? {} : { body: Buffer.isBuffer(body) ? body : JSON.stringify(body) }) });
  if (!response.ok) throw new Error(`Orthanc ${method} ${route}: ${response.status} ${await response.text()}`);
  return response.json();
}

const stored = new Set<string>();
const refused = new Set<string>();
const studies = { dimse: uid(), stow: uid(), other: uid(), orthancDimse: uid(), orthancStow: uid() };

beforeAll(async () => {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'orthanc.sh'), 'start'], { env: ORTHANC_ENV, stdio: 'inherit' });
  const env = {
    KAFKA_BROKERS: testBrokers().join(','),
    LOG_LEVEL: 'info',
    MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
    RESULTS_DATA_DIR: 'memory://',
    INFERENCE_PROVIDERS: 'cpu',
    PREPROCESS_DECODE_WORKERS: '1',
    OBJECT_STORE_URL: `file://${path.join(WORK, 'objects')}`,
    INGEST_DIMSE_PORT: String(DIMSE_PORT),
    INGEST_GRPC_PORT: String(BASE + 11),
    INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES: 'STORESCU,ORTHANC',
    INGEST_STOW_MAX_BYTES: String(STOW_MAX_BYTES),
  };
  services.push(...(await startServices({ ports: PORTS, env, logDir: path.join(WORK, 'logs') })).values());
});

afterAll(async () => {
  execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'orthanc.sh'), 'stop'], { env: ORTHANC_ENV, stdio: 'inherit' });
  const codes = await Promise.all(services.map((s) => s.stop()));
  expect(codes).toEqual(services.map(() => 0));
});

describe('DIMSE: dcmtk against the SCP', () => {
  const scu = ['-aet', 'STORESCU', '-aec', 'THORAX', '127.0.0.1', String(DIMSE_PORT)];

  it('answers C-ECHO', async () => {
    const { stdout, stderr } = await run('echoscu', ['-v', ...scu]);
    expect(stdout + stderr).toMatch(/Received Echo Response \(Success\)/);
  });

  it('stores a study sent over one association, uncompressed and JPEG-LS', async () => {
    const a = instance('mono2-8bit.dcm', studies.dimse);
    const b = instance('mono2-explicit-le-window.dcm', studies.dimse);
    const plain = await storescu([...scu, a.file, b.file]);
    expect(plain.output.match(/Received Store Response \(Success\)/g)).toHaveLength(2);
    const jls = instance('jpeg-ls-lossless.dcm', studies.dimse);
    const compressed = await storescu(['-xt', ...scu, jls.file]);
    expect(compressed.output).toMatch(/Received Store Response \(Success\)/);
    for (const i of [a, b, jls]) stored.add(i.sop);
  });

  it('rejects an unknown calling AE title at association (calling AE not recognized)', async () => {
    const result = await storescu(['-aet', 'INTRUDER', '-aec', 'THORAX', '127.0.0.1', String(DIMSE_PORT), path.join(FIXTURES, 'mono2-8bit.dcm')]);
    expect(result.code).not.toBe(0);
    expect(result.output).toMatch(/Rejected Permanent, Source: Service User[\s\S]*Calling AE Title Not Recognized/);
  });

  it('refuses a CT image (SOP class) and an MPEG-2 proposal (transfer syntax) at negotiation', async () => {
    const ct = instance('mono2-8bit.dcm', studies.dimse, { '0008,0016': '1.2.840.10008.5.1.4.1.1.2', '0008,0060': 'CT' });
    const ctResult = await storescu([...scu, ct.file]);
    expect(ctResult.output).toMatch(/No presentation context for: \(CT\)/);
    const mpeg = instance('mono2-8bit.dcm', studies.dimse);
    const mpegResult = await storescu(['-R', '-xm', ...scu, mpeg.file]);
    expect(mpegResult.output).toMatch(/No Acceptable Presentation Contexts/);
    refused.add(ct.sop).add(mpeg.sop);
  });

  it('answers a lateral view with C-STORE 0xC000 (cannot understand) and keeps the association', async () => {
    const lateral = instance('mono2-8bit.dcm', studies.dimse, { '0018,5101': 'LL' });
    const after = instance('mono2-8bit.dcm', studies.dimse);
    const result = await storescu(['--no-halt', ...scu, lateral.file, after.file]);
    expect(result.output).toMatch(/Received Store Response \(Error: CannotUnderstand\)/);
    expect(result.output).toMatch(/Received Store Response \(Success\)/);
    refused.add(lateral.sop);
    stored.add(after.sop);
  });
});

describe('STOW-RS', () => {
  it('stores what it can and names each failure (202): gate 0xC000, unparseable 0xC000, other study 0xA900', async () => {
    const good = [instance('mono2-8bit.dcm', studies.stow), instance('rle-mono2.dcm', studies.stow)];
    const lateral = instance('mono2-8bit.dcm', studies.stow, { '0018,5101': 'LL' });
    const elsewhere = instance('mono2-8bit.dcm', studies.other);
    const body = multipart([...good, lateral, elsewhere].map((i) => readFileSync(i.file)).concat(Buffer.from('not a DICOM file')), 'thorax-e2e');
    const { status, json } = await stow(body, { study: studies.stow });
    expect(status).toBe(202);
    const result = storeResult(json);
    expect(result.stored).toEqual(good.map((i) => i.sop));
    expect(result.failed).toEqual([
      [lateral.sop, 0xc000],
      [elsewhere.sop, 0xa900],
      [null, 0xc000],
    ]);
    for (const i of good) stored.add(i.sop);
    refused.add(lateral.sop).add(elsewhere.sop);
  });

  it('answers 200 when all are stored, 409 when none is (curl as the client)', async () => {
    const ok = instance('jpeg-baseline-mono8.dcm', studies.stow);
    const file = path.join(WORK, 'stow-ok.multipart');
    writeFileSync(file, multipart([readFileSync(ok.file)], 'curl-boundary'));
    const { stdout } = await run('curl', [
      '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST',
      '-H', 'Content-Type: multipart/related; type="application/dicom"; boundary=curl-boundary',
      '--data-binary', `@${file}`, `${INGEST}/dicomweb/studies`,
    ]);
    expect(stdout).toBe('200');
    stored.add(ok.sop);
    const none = await stow(multipart([Buffer.from('garbage')], 'thorax-e2e'));
    expect(none.status).toBe(409);
    expect(storeResult(none.json).failed).toEqual([[null, 0xc000]]);
  });

  it('refuses a malformed body (400), another media type (415) and an oversize body (413)', async () => {
    const truncated = Buffer.from('--thorax-e2e\r\nContent-Type: application/dicom\r\n\r\nDICM and no end');
    expect((await stow(truncated)).status).toBe(400);
    expect((await stow(readFileSync(path.join(FIXTURES, 'mono2-8bit.dcm')), { contentType: 'application/dicom' })).status).toBe(415);
    const big = instance('mono2-8bit.dcm', studies.stow);
    const oversize = await stow(multipart([readFileSync(big.file), Buffer.alloc(STOW_MAX_BYTES)], 'thorax-e2e'));
    expect(oversize.status).toBe(413);
    refused.add(big.sop);
  });
});

describe('Orthanc as the sending PACS', () => {
  async function upload(study: string, fixtures: string[]): Promise<{ orthancStudy: string; sops: string[] }> {
    const sops: string[] = [];
    let orthancStudy = '';
    for (const fixture of fixtures) {
      const i = instance(fixture, study);
      const answer = (await orthanc('POST', '/instances', readFileSync(i.file))) as { ParentStudy: string };
      orthancStudy = answer.ParentStudy;
      sops.push(i.sop);
    }
    return { orthancStudy, sops };
  }

  it('pushes a study to the Thorax modality by C-STORE', async () => {
    const { orthancStudy, sops } = await upload(studies.orthancDimse, ['mono2-8bit.dcm', 'mono2-explicit-le-window.dcm', 'j2k-lossless.dcm']);
    const answer = (await orthanc('POST', '/modalities/thorax/store', { Resources: [orthancStudy], Synchronous: true })) as { InstancesCount: number; FailedInstancesCount: number };
    expect(answer).toMatchObject({ InstancesCount: 3, FailedInstancesCount: 0 });
    for (const sop of sops) stored.add(sop);
  });

  it('pushes a study to the Thorax DICOMweb server by STOW-RS', async () => {
    const { orthancStudy, sops } = await upload(studies.orthancStow, ['mono2-8bit.dcm', 'rle-mono1.dcm']);
    const answer = (await orthanc('POST', '/dicom-web/servers/thorax/stow', { Resources: [orthancStudy], Synchronous: true })) as { InstancesCount: string };
    expect(Number(answer.InstancesCount)).toBe(2);
    for (const sop of sops) stored.add(sop);
  });
});

describe('every accepted instance through the pipeline', () => {
  it('ends in exactly one ok findings event and one stored result; refused ones in nothing', async () => {
    const records = await collect(kafka, 'thorax.findings.v1', (rs) => [...stored].every((id) => rs.some((r) => r.key === id)), 150_000);
    expectOncePerId(records, stored, 'findings events');
    expect([...countByKey(records, refused).values()].every((n) => n === 0)).toBe(true);
    for (const r of records.filter((x) => x.key !== null && stored.has(x.key))) {
      const event = decodeFindingsEvent(r.value);
      expect({ id: r.key, status: event.status, error: event.error ?? null }).toEqual({ id: r.key, status: 'ok', error: null });
    }
    for (const id of stored) {
      const response = await fetch(`http://127.0.0.1:${PORTS.results}/v1/findings/${encodeURIComponent(id)}`);
      expect({ id, status: response.status }).toEqual({ id, status: 200 });
    }
  });

  it('counts the instances of each edge and writes one audit line per association and request', async () => {
    const metrics = await (await fetch(`${INGEST}/metrics`)).text();
    const count = (edge: string, outcome: string) =>
      Number(new RegExp(`thorax_edge_instances_total\\{edge="${edge}",outcome="${outcome}"[^}]*\\} (\\d+)`).exec(metrics)?.[1] ?? -1);
    expect(count('dimse', 'stored')).toBe(4 + 3);
    expect(count('dimse', 'failed')).toBe(1);
    expect(count('dicomweb', 'stored')).toBe(3 + 2);
    const log = readFileSync(path.join(WORK, 'logs', 'ingest.log'), 'utf8');
    const audit = log.split('\n').filter((l) => l.includes('"name":"audit"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit.find((a) => a['outcome'] === 'rejected')).toMatchObject({ callingAeTitle: 'INTRUDER', rejectReason: 'calling-ae-not-recognized' });
    expect(audit.find((a) => a['callingAeTitle'] === 'ORTHANC')).toMatchObject({ instancesStored: 3, outcome: 'released' });
    expect(audit.filter((a) => a['event'] === 'edge.request').map((a) => a['status'])).toEqual(expect.arrayContaining([202, 200, 409, 400, 415, 413]));
    // Identifiers only: no study UID and no patient attribute in the audit trail.
    for (const a of audit) expect(JSON.stringify(a)).not.toMatch(new RegExp(`${studies.dimse}|${studies.stow}|PAT000`));
  });
});
