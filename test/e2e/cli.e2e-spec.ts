/**
 * The `thorax` operator CLI driven as an operator would: the built entry point spawned with the
 * services' environment variables, against a running stack (real broker, the four built services,
 * two inference replicas, real ONNX models). Publish a folder and wait for the results; dead-letter
 * a CT study at the modality gate, widen the gate, replay it (once only) and see its findings;
 * switch the model version on every replica and see it in the next findings, and after a restart.
 */
import { FINDINGS_SCHEMA_ID, type FindingsEvent } from '@thorax/contracts';
import {
  REPO_ROOT,
  type RunningService,
  type ServiceName,
  servicePorts,
  startBuiltService,
  startServices,
  testBrokers,
  testKafka,
  waitForService,
} from '@thorax/testing';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

jest.setTimeout(300_000);

const RUN = `cli-${Date.now().toString(36)}`;
// Ports of their own: results, ingest, preprocess, inference on base..base+3, a second inference
// replica on base+4, results gRPC on base+10; below the kernel's ephemeral range (32768-60999), so
// no outgoing connection takes a port while a service restarts.
const BASE = Number(process.env['THORAX_E2E_CLI_PORT_BASE'] ?? 25180);
const PORTS = servicePorts(BASE);
const INFERENCE_2_PORT = BASE + 4;
const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'imaging');
const ENTRY = path.join(REPO_ROOT, 'deploy', 'images', 'thorax.js');
const CONTROL_TOPIC = `thorax.inference.control.${RUN}`;
const LEDGER_TOPIC = `thorax.dlq.replays.${RUN}`;
const NEW_VERSION = `2.0.0-${RUN}`;
const logDir = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
const kafka = testKafka('thorax-e2e-cli');

let work: string;
let modelDir: string;
let services: Map<ServiceName, RunningService>;
let inference2: RunningService;
let serviceEnv: Record<string, string>;

/** The environment an operator's shell would have: the services' Kafka variables and URLs. */
function cliEnv(): Record<string, string> {
  return {
    KAFKA_BROKERS: testBrokers().join(','),
    THORAX_INGEST_URL: `http://127.0.0.1:${PORTS.ingest}`,
    THORAX_PREPROCESS_URL: `http://127.0.0.1:${PORTS.preprocess}`,
    THORAX_INFERENCE_URL: `http://127.0.0.1:${PORTS.inference}`,
    THORAX_RESULTS_URL: `http://127.0.0.1:${PORTS.results}`,
    THORAX_DLQ_REPLAYS_TOPIC: LEDGER_TOPIC,
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Spawns `thorax <args>` (the image's entry point, built dist/) and collects its output. */
function thorax(args: string[], timeoutMs = 180_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ENTRY, ...args], {
      cwd: work,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...cliEnv() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** JSON lines of a run's stdout. */
function jsonLines<T>(run: Run): T[] {
  return run.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as T);
}

/** Sets `thorax.model.version` in an ONNX file's metadata_props (ModelProto field 14), leaving the graph as it is. */
function withModelVersion(onnx: Buffer, version: string): Buffer {
  const varint = (at: number): [number, number] => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = onnx[at++] as number;
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(byte & 0x80)) return [value, at];
    }
  };
  const encode = (n: number): Buffer => {
    const out: number[] = [];
    do {
      let byte = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) byte |= 0x80;
      out.push(byte);
    } while (n > 0);
    return Buffer.from(out);
  };
  const field = (n: number, body: Buffer) => Buffer.concat([encode(n * 8 + 2), encode(body.length), body]);
  const parts: Buffer[] = [];
  for (let at = 0; at < onnx.length; ) {
    const start = at;
    const [tag, next] = varint(at);
    at = next;
    const wire = tag % 8;
    if (wire === 0) at = varint(at)[1];
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const [length, body] = varint(at);
      at = body + length;
      if (Math.floor(tag / 8) === 14 && onnx.subarray(body, at).includes('thorax.model.version')) continue;
    } else throw new Error(`unexpected wire type ${wire}`);
    parts.push(onnx.subarray(start, at));
  }
  parts.push(field(14, Buffer.concat([field(1, Buffer.from('thorax.model.version')), field(2, Buffer.from(version))])));
  return Buffer.concat(parts);
}

async function modelsOf(port: number): Promise<{ serving: { primary: { version: string; directory: string } }; selection: { primary: string | null } }> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/models`);
  expect(res.status).toBe(200);
  return (await res.json()) as { serving: { primary: { version: string; directory: string } }; selection: { primary: string | null } };
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'thorax-cli-e2e-'));
  // Two model versions: the committed model as 1.0.0, and the same graph announcing NEW_VERSION.
  modelDir = path.join(work, 'models');
  const committed = path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn');
  const { readdir } = await import('node:fs/promises');
  const source = path.join(committed, (await readdir(committed)).sort().at(-1) as string, 'model.onnx');
  await mkdir(path.join(modelDir, '1.0.0'), { recursive: true });
  await mkdir(path.join(modelDir, '2.0.0'));
  await mkdir(path.join(modelDir, '3.0.0'));
  await copyFile(source, path.join(modelDir, '1.0.0', 'model.onnx'));
  await writeFile(path.join(modelDir, '2.0.0', 'model.onnx'), withModelVersion(await readFile(source), NEW_VERSION));
  await writeFile(path.join(modelDir, '3.0.0', 'model.onnx'), 'not an ONNX file');
  // The folder an operator publishes: three valid images, and a CT study the modality gate refuses.
  await mkdir(path.join(work, 'batch'));
  await copyFile(path.join(FIXTURES, 'valid', 'grey8.png'), path.join(work, 'batch', `${RUN}-1.png`));
  await copyFile(path.join(FIXTURES, 'valid', 'grey.jpg'), path.join(work, 'batch', `${RUN}-2.jpg`));
  await copyFile(path.join(FIXTURES, 'valid', 'mono2-8bit.dcm'), path.join(work, 'batch', `${RUN}-3.dcm`));
  await copyFile(path.join(FIXTURES, 'hostile', 'modality-ct.dcm'), path.join(work, `${RUN}-ct.dcm`));
  await copyFile(path.join(FIXTURES, 'valid', 'grey16.png'), path.join(work, `${RUN}-after.png`));

  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    waitForLeaders: true,
    topics: [
      { topic: CONTROL_TOPIC, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
      { topic: LEDGER_TOPIC, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact,delete' }] },
    ],
  });
  await admin.disconnect();

  serviceEnv = {
    KAFKA_BROKERS: testBrokers().join(','),
    LOG_LEVEL: 'info',
    MODEL_DIR: modelDir,
    INFERENCE_MODEL_VERSION: '1.0.0',
    INFERENCE_MODEL_POLL_MS: '0',
    INFERENCE_CONTROL_TOPIC: CONTROL_TOPIC,
    INFERENCE_PROVIDERS: 'cpu',
    INFERENCE_WORKERS: '1',
    RESULTS_DATA_DIR: 'memory://',
    INGEST_MODALITIES: 'CR,DX',
  };
  services = await startServices({ ports: PORTS, env: serviceEnv, logDir });
  inference2 = startBuiltService('inference', { ...serviceEnv, HTTP_PORT: String(INFERENCE_2_PORT) }, path.join(logDir, 'replica-2'));
  await waitForService(inference2, `http://127.0.0.1:${INFERENCE_2_PORT}/readyz`, 120_000);
});

afterAll(async () => {
  const running = [...(services?.values() ?? []), ...(inference2 ? [inference2] : [])];
  const codes = await Promise.all(running.map((s) => s.stop()));
  await rm(work, { recursive: true, force: true });
  expect(codes).toEqual(running.map(() => 0));
});

describe('thorax CLI against a running stack', () => {
  it('publishes a folder with --wait: each result as it arrives, a summary table, exit 0', async () => {
    const run = await thorax(['publish', path.join(work, 'batch'), '--id-from-file-name', '--wait', '--timeout', '120']);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: expect.stringContaining('published 3 image(s)') });
    const ids = [1, 2, 3].map((n) => `${RUN}-${n}`);
    for (const id of ids) expect(run.stdout).toMatch(new RegExp(`^\\S+  ${id}  ok  thorax-tiny-cnn@\\S+  `, 'm'));
    const table = run.stdout.slice(run.stdout.indexOf('\nid '));
    expect(table.split('\n').filter((l) => ids.some((id) => l.startsWith(`${id} `)))).toHaveLength(3);
    expect(run.stdout).toContain('3 images: 3 ok, 0 error, 0 missing; latency p50 ');
  });

  let position = '';

  it('dead-letters a CT study at the modality gate: publish exits 3, dlq list counts it, dlq show describes it', async () => {
    const id = `${RUN}-ct`;
    const published = await thorax(['publish', path.join(work, `${id}.dcm`), '--id-from-file-name', '--wait', '--timeout', '60']);
    expect(published.code).toBe(3);
    expect(published.stdout).toContain(`${id}  ERROR  UNSUPPORTED_MODALITY (ingest)`);
    expect(published.stdout).toContain('1 images: 0 ok, 1 error, 0 missing');

    const listed = await thorax(['dlq', 'list', '--topic', 'studies', '--key', id, '--json']);
    expect(listed.code).toBe(0);
    const records = jsonLines<{ position: string; code: string; stage: string; key: string; replayed: boolean }>(listed);
    expect(records).toEqual([expect.objectContaining({ key: id, code: 'UNSUPPORTED_MODALITY', stage: 'ingest', replayed: false })]);
    position = records[0]?.position ?? '';
    expect(position).toMatch(/^thorax\.studies\.v1\.dlq:\d+:\d+$/);

    const table = await thorax(['dlq', 'list', '--topic', 'studies', '--code', 'UNSUPPORTED_MODALITY', '--key', id]);
    expect(table.stdout).toMatch(/thorax\.studies\.v1\.dlq\s+ingest\s+UNSUPPORTED_MODALITY\s+1\s+0\s/);

    const shown = await thorax(['dlq', 'show', position]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`key        ${id}`);
    expect(shown.stdout).toContain('error      UNSUPPORTED_MODALITY at ingest: modality CT is not one of CR, DX');
    expect(shown.stdout).toContain('"Modality": "CT"');
    expect(shown.stdout).toContain('(file bytes not shown)');
    // The pixel data is not in it: the whole answer is smaller than the 16 KB file.
    expect(shown.stdout.length).toBeLessThan(4000);
  });

  it('replays the dead letter after the gate is widened: findings arrive, a second replay sends nothing', async () => {
    const id = `${RUN}-ct`;
    // The fix: ingest restarted with CT allowed.
    await services.get('ingest')?.stop();
    const ingest = startBuiltService('ingest', { ...serviceEnv, INGEST_MODALITIES: 'CR,DX,CT', HTTP_PORT: String(PORTS.ingest) }, path.join(logDir, 'ingest-ct'));
    services.set('ingest', ingest);
    await waitForService(ingest, `http://127.0.0.1:${PORTS.ingest}/readyz`, 60_000);

    const dry = await thorax(['dlq', 'replay', position, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`would    ${position}  ${id}  UNSUPPORTED_MODALITY -> thorax.studies.v1`);

    const watching = thorax(['watch', '--id', id, '--max', '1', '--json', '--timeout', '120']);
    await new Promise((r) => setTimeout(r, 3000));
    const replay = await thorax(['dlq', 'replay', '--topic', 'studies', '--key', id, '--rate', '5']);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toContain(`replayed ${position}  ${id}  UNSUPPORTED_MODALITY -> thorax.studies.v1`);
    expect(replay.stderr).toContain('replayed 1, already replayed 0, not replayable 0, of 1 selected');

    const watched = await watching;
    expect(watched.code).toBe(0);
    const [event] = jsonLines<FindingsEvent>(watched);
    expect(event).toMatchObject({ schema: FINDINGS_SCHEMA_ID, id, status: 'ok', error: null, study: { viewPosition: 'PA' } });
    expect(event?.findings).toHaveLength(14);

    const again = await thorax(['dlq', 'replay', position]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`skip     ${position}  ${id}  already replayed`);
    expect(again.stderr).toContain('replayed 0, already replayed 1');
    const listed = jsonLines<{ replayed: boolean }>(await thorax(['dlq', 'list', '--topic', 'studies', '--key', id, '--json']));
    expect(listed).toEqual([expect.objectContaining({ replayed: true })]);
  });

  it('switches the model version on every replica; the next findings carry it, and a restarted replica keeps it', async () => {
    const before = await thorax(['models', 'list', '--json']);
    expect(before.code).toBe(0);
    expect(JSON.parse(before.stdout)).toMatchObject({ versions: [{ version: '1.0.0', roles: ['primary'] }, { version: '2.0.0' }, { version: '3.0.0' }], selection: { primary: '1.0.0' } });

    // A version that does not load is refused; 1.0.0 keeps serving.
    const broken = await thorax(['models', 'activate', '3.0.0']);
    expect(broken).toMatchObject({ code: 1, stderr: expect.stringContaining('not servable') });
    expect((await thorax(['models', 'activate', '9.9.9'])).code).toBe(2);

    const activated = await thorax(['models', 'activate', '2.0.0', '--json']);
    expect(activated.code).toBe(0);
    expect(JSON.parse(activated.stdout)).toMatchObject({ serving: { primary: { version: NEW_VERSION, directory: '2.0.0' } }, selection: { primary: '2.0.0' } });
    // The other replica follows the control topic.
    const deadline = Date.now() + 60_000;
    while ((await modelsOf(INFERENCE_2_PORT)).serving.primary.version !== NEW_VERSION && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
    expect((await modelsOf(INFERENCE_2_PORT)).serving.primary.version).toBe(NEW_VERSION);

    const published = await thorax(['publish', path.join(work, `${RUN}-after.png`), '--id-from-file-name', '--wait', '--json', '--timeout', '60']);
    expect(published.code).toBe(0);
    const [event] = jsonLines<FindingsEvent>(published);
    expect(event).toMatchObject({ id: `${RUN}-after`, status: 'ok', model: { version: NEW_VERSION } });

    // A restarted replica reads the control topic before loading: it serves 2.0.0, not its INFERENCE_MODEL_VERSION.
    await inference2.stop();
    inference2 = startBuiltService('inference', { ...serviceEnv, HTTP_PORT: String(INFERENCE_2_PORT) }, path.join(logDir, 'replica-2-restarted'));
    await waitForService(inference2, `http://127.0.0.1:${INFERENCE_2_PORT}/readyz`, 120_000);
    expect(await modelsOf(INFERENCE_2_PORT)).toMatchObject({ serving: { primary: { version: NEW_VERSION } }, selection: { primary: '2.0.0' } });
  });

  it('reports status: every service ready, the active model and provider, rates and consumer lag', async () => {
    const run = await thorax(['status', '--interval', '1']);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    for (const service of ['ingest', 'preprocess', 'inference', 'results']) expect(run.stdout).toMatch(new RegExp(`^${service}\\s+yes\\s`, 'm'));
    expect(run.stdout).toMatch(new RegExp(`^inference\\s+thorax-tiny-cnn\\s+${NEW_VERSION.replace(/\./g, '\\.')}\\s+cpu$`, 'm'));
    expect(run.stdout).toContain('rates over the last');
    expect(run.stdout).toMatch(/^thorax-ingest\s+thorax\.studies\.v1\s+\d+\s+\d+\s+\d+\s+\d+$/m);
  });
});
