/**
 * The results service's gRPC surface through standard clients nobody here wrote: grpcurl (server
 * reflection only, no .proto files given) and grpc_health_probe, both built from their Go modules
 * by scripts/grpc-tools.sh. Real broker, the four built services, a PNG from test/fixtures through
 * the pipeline; then results alone again with bearer-token auth on (AUTH_JWKS_FILE), over the same
 * store, and with TLS as well (a self-signed certificate made with openssl). Ports 31000-31999
 * (THORAX_GRPC_E2E_PORT_BASE moves them).
 */
import {
  produce,
  REPO_ROOT,
  type RunningService,
  servicePorts,
  startBuiltService,
  startServices,
  testBrokers,
  testKafka,
} from '@thorax/testing';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type CryptoKey, exportJWK, generateKeyPair, SignJWT } from 'jose';

jest.setTimeout(300_000);

const RUN = `grpc-e2e-${Date.now().toString(36)}`;
const BASE = Number(process.env['THORAX_GRPC_E2E_PORT_BASE'] ?? 31080);
const PORTS = servicePorts(BASE);
// Results alone, with auth on, after the pipeline is stopped, then with TLS too: ports of their own.
const AUTH_PORTS = servicePorts(BASE + 100);
const TLS_PORTS = servicePorts(BASE + 200);
const GRPC = `127.0.0.1:${PORTS.resultsGrpc}`;
const AUTH_GRPC = `127.0.0.1:${AUTH_PORTS.resultsGrpc}`;
const TLS_GRPC = `127.0.0.1:${TLS_PORTS.resultsGrpc}`;
/** The name in the test certificate (and its SAN) that clients verify. */
const SERVER_NAME = 'results.thorax.test';
const ISSUER = 'https://idp.hospital.example/realms/radiology';
const AUDIENCE = 'thorax-results';
// A study of this run only, so ListFindings by study sees exactly this run's images.
const STUDY = { studyUid: `1.2.826.0.1.3680043.8.498.${Date.now()}`, accession: `ACC-${RUN}` };
const IMAGE_A = `${RUN}-a`;
const IMAGE_B = `${RUN}-b`;

const dir = mkdtempSync(path.join(tmpdir(), 'thorax-grpc-e2e-'));
const logDir = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
const kafka = testKafka('thorax-grpc-e2e');
let services: RunningService[] = [];
let grpcurlBin = '';
let probeBin = '';
let signingKey: CryptoKey;

/** Builds (once, cached) or finds a tool through scripts/grpc-tools.sh; fails naming what is missing. */
function tool(name: 'grpcurl' | 'grpc_health_probe'): string {
  try {
    return execFileSync('bash', [path.join(REPO_ROOT, 'scripts', 'grpc-tools.sh'), 'path', name], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 900_000,
    }).trim();
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`${name} is not available (bash scripts/grpc-tools.sh ensure builds it; it needs Go):\n${stderr}`);
  }
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a client to its end (grpc_health_probe reports on stderr, grpcurl's errors go there too). */
function run(bin: string, args: string[], timeoutMs = 30_000): Run {
  const result = spawnSync(bin, args, { encoding: 'utf8', timeout: timeoutMs });
  if (result.error) throw result.error;
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** grpcurl's transport flags per address: plaintext unless a TLS server was registered here. */
const transports = new Map<string, string[]>();
const transport = (address: string): string[] => transports.get(address) ?? ['-plaintext'];

/** grpcurl `list`/`describe` commands; `-max-time` bounds every call. */
const grpcurl = (address: string, command: string[]): Run => run(grpcurlBin, [...transport(address), '-max-time', '10', address, ...command]);

/** One RPC through grpcurl with a JSON request; `-max-time` bounds it, streaming ones included. */
const call = (address: string, method: string, request: object, flags: string[] = [], maxTimeS = 10): Run =>
  run(
    grpcurlBin,
    [...transport(address), '-max-time', String(maxTimeS), ...flags, '-d', JSON.stringify(request), address, method],
    (maxTimeS + 10) * 1000,
  );

function ok(result: Run): string {
  if (result.code !== 0) throw new Error(`exit ${result.code}: ${result.stderr || result.stdout}`);
  return result.stdout;
}

/** Every JSON message grpcurl printed (it writes them pretty-printed, one after another). */
function messages(stdout: string): Record<string, unknown>[] {
  return stdout
    .split(/\n(?=\{)/)
    .filter((chunk) => chunk.trim())
    .map((chunk) => JSON.parse(chunk) as Record<string, unknown>);
}

const getFindings = (address: string, id: string, flags: string[] = []) => call(address, 'thorax.v1.ResultsService/GetFindings', { id }, flags);

/** Polls GetFindings through grpcurl until the id has a result. */
async function waitForResult(id: string, timeoutMs = 180_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = getFindings(GRPC, id);
    if (answer.code === 0) return (JSON.parse(answer.stdout) as { result: Record<string, unknown> }).result;
    if (!/NotFound/.test(answer.stderr)) throw new Error(`GetFindings ${id}: ${answer.stderr}`);
    if (Date.now() > deadline) throw new Error(`no result for ${id} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function publishPng(id: string): Promise<void> {
  const png = readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'imaging', 'valid', 'grey8.png'));
  await produce(kafka, 'thorax.studies.v1', [
    {
      key: id,
      value: png,
      headers: { 'content-type': 'image/png', 'thorax-study-uid': STUDY.studyUid, 'thorax-accession': STUDY.accession },
    },
  ]);
}

/** A streaming grpcurl call whose output is read as it arrives. */
function streaming(address: string, args: string[], maxTimeS: number): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  let stdout = '';
  const child = spawn(grpcurlBin, ['-plaintext', '-max-time', String(maxTimeS), ...args.slice(0, -1), address, ...args.slice(-1)]);
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => stdout, exited };
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function token(scope: string): Promise<string> {
  return new SignJWT({ scope })
    .setProtectedHeader({ alg: 'RS256', kid: 'grpc-e2e', typ: 'at+jwt' })
    .setSubject('ehr-gateway')
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(signingKey);
}

const stopAll = async () => {
  await Promise.all(services.map((s) => s.stop()));
  services = [];
};

beforeAll(async () => {
  grpcurlBin = tool('grpcurl');
  probeBin = tool('grpc_health_probe');
  const pair = await generateKeyPair('RS256');
  signingKey = pair.privateKey;
  writeFileSync(
    path.join(dir, 'jwks.json'),
    JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'grpc-e2e', alg: 'RS256', use: 'sig' }] }),
  );
  const started = await startServices({
    ports: PORTS,
    logDir,
    env: {
      KAFKA_BROKERS: testBrokers().join(','),
      LOG_LEVEL: 'info',
      MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
      // On disk, so that results restarted with auth on serves what the pipeline stored.
      RESULTS_DATA_DIR: path.join(dir, 'results'),
      INFERENCE_PROVIDERS: 'cpu',
    },
  });
  services = [...started.values()];
});

afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('results gRPC through grpcurl and grpc_health_probe', () => {
  let cursorA = '';

  it('reflection: list and describe resolve every type, well-known types and the health map included', () => {
    expect(ok(grpcurl(GRPC, ['list'])).trim().split('\n').sort()).toEqual([
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
      'thorax.v1.ResultsService',
    ]);
    const service = ok(grpcurl(GRPC, ['describe', 'thorax.v1.ResultsService']));
    expect(service).toContain('rpc WatchFindings ( .thorax.v1.WatchFindingsRequest ) returns ( stream .thorax.v1.WatchFindingsResponse );');
    expect(ok(grpcurl(GRPC, ['describe', 'thorax.v1.ListFindingsRequest']))).toMatch(/\.google\.protobuf\.Timestamp from = 7;/);
    expect(ok(grpcurl(GRPC, ['describe', 'google.protobuf.Timestamp']))).toMatch(/int64 seconds = 1;/);
    expect(ok(grpcurl(GRPC, ['describe', 'grpc.health.v1.HealthListResponse']))).toContain(
      'map<string, .grpc.health.v1.HealthCheckResponse> statuses = 1;',
    );
    // Every service, every method, every message they use.
    const all = ok(grpcurl(GRPC, ['describe']));
    expect(all.match(/^\S+ is a service:$/gm)).toHaveLength(4);
    expect(ok(grpcurl(GRPC, ['list', 'thorax.v1.ResultsService'])).trim().split('\n')).toEqual([
      'thorax.v1.ResultsService.GetFindings',
      'thorax.v1.ResultsService.GetStudy',
      'thorax.v1.ResultsService.ListFindings',
      'thorax.v1.ResultsService.WatchFindings',
    ]);
  });

  it('health: grpcurl Check and Watch, grpc_health_probe for the server and for ResultsService', () => {
    expect(JSON.parse(ok(call(GRPC, 'grpc.health.v1.Health/Check', { service: '' })))).toEqual({ status: 'SERVING' });
    expect(JSON.parse(ok(call(GRPC, 'grpc.health.v1.Health/Check', { service: 'thorax.v1.ResultsService' })))).toEqual({
      status: 'SERVING',
    });
    const unknown = call(GRPC, 'grpc.health.v1.Health/Check', { service: 'thorax.v1.Nope' });
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('Code: NotFound');
    // Watch streams the current status, then holds the stream open until the deadline.
    const watch = call(GRPC, 'grpc.health.v1.Health/Watch', { service: 'thorax.v1.ResultsService' }, [], 2);
    expect(messages(watch.stdout)).toEqual([{ status: 'SERVING' }]);
    expect(watch.stderr).toContain('Code: DeadlineExceeded');

    // grpc_health_probe exit codes: 0 serving, 2 connection failure, 3 RPC failure, 4 unhealthy.
    const probe = run(probeBin, [`-addr=${GRPC}`, '-connect-timeout=5s', '-rpc-timeout=5s']);
    expect([probe.code, probe.stderr.trim()]).toEqual([0, 'status: SERVING']);
    const probeService = run(probeBin, [`-addr=${GRPC}`, '-service=thorax.v1.ResultsService', '-rpc-timeout=5s']);
    expect([probeService.code, probeService.stderr.trim()]).toEqual([0, 'status: SERVING']);
    const probeUnknown = run(probeBin, [`-addr=${GRPC}`, '-service=thorax.v1.Nope', '-rpc-timeout=5s']);
    expect(probeUnknown.code).toBe(3);
    expect(probeUnknown.stderr).toContain('NotFound');
  });

  it('Watch streams a PNG result as it is stored; Get and List return it', async () => {
    // From now: open before publishing, so the new result is pushed to it.
    const watch = streaming(GRPC, ['-d', '{}', 'thorax.v1.ResultsService/WatchFindings'], 240);
    try {
      // grpcurl has connected and the stream is open when the server has answered a call on it.
      await new Promise((r) => setTimeout(r, 1500));
      await publishPng(IMAGE_A);
      await until(() => watch.output().includes(IMAGE_A), 200_000, `${IMAGE_A} on WatchFindings`);
      await until(() => messages(watch.output()).some((m) => (m['result'] as { id?: string } | undefined)?.id === IMAGE_A), 10_000, 'a whole message');
    } finally {
      watch.child.kill('SIGTERM');
      await watch.exited;
    }
    const pushed = messages(watch.output()).filter((m) => (m['result'] as { id: string }).id === IMAGE_A);
    expect(pushed).toHaveLength(1);
    cursorA = pushed[0]['cursor'] as string;
    expect(cursorA).not.toBe('');
    expect(pushed[0]['result']).toMatchObject({ id: IMAGE_A, status: 'FINDINGS_STATUS_OK' });

    const result = await waitForResult(IMAGE_A);
    expect(result).toMatchObject({ id: IMAGE_A, status: 'FINDINGS_STATUS_OK', study: { studyUid: STUDY.studyUid, accession: STUDY.accession } });
    expect(result['findings']).toHaveLength(14);
    // The Timestamp fields come back as RFC 3339 through the reflected google.protobuf.Timestamp.
    expect(JSON.stringify(result)).toMatch(/"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"/);

    const listed = JSON.parse(
      ok(call(GRPC, 'thorax.v1.ResultsService/ListFindings', { study_uid: STUDY.studyUid, from: '2020-01-01T00:00:00Z', page_size: 10 })),
    ) as { results: { id: string }[] };
    expect(listed.results.map((r) => r.id)).toEqual([IMAGE_A]);
    const future = JSON.parse(
      ok(call(GRPC, 'thorax.v1.ResultsService/ListFindings', { study_uid: STUDY.studyUid, from: '2999-01-01T00:00:00Z' })),
    ) as { results?: unknown[] };
    expect(future.results ?? []).toEqual([]);

    const missing = getFindings(GRPC, `${RUN}-never-sent`);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('Code: NotFound');
  });

  it('Watch resumed from a cursor replays what was stored after it, then ends at its deadline', async () => {
    await publishPng(IMAGE_B);
    await waitForResult(IMAGE_B);
    const resumed = call(GRPC, 'thorax.v1.ResultsService/WatchFindings', { cursor: cursorA }, [], 4);
    expect(resumed.stderr).toContain('Code: DeadlineExceeded');
    const ids = messages(resumed.stdout).map((m) => (m['result'] as { id: string }).id);
    expect(ids.filter((id) => id.startsWith(RUN))).toEqual([IMAGE_B]);
  });

  it('with auth on: ResultsService needs a bearer token with the read scope; health and reflection stay open', async () => {
    await stopAll();
    // Stopped: the probe cannot connect (exit 2).
    expect(run(probeBin, [`-addr=${GRPC}`, '-connect-timeout=2s']).code).toBe(2);
    const started = await startServices({
      ports: AUTH_PORTS,
      logDir: path.join(logDir, 'auth'),
      names: ['results'],
      env: {
        KAFKA_BROKERS: testBrokers().join(','),
        LOG_LEVEL: 'info',
        RESULTS_DATA_DIR: path.join(dir, 'results'),
        AUTH_JWKS_FILE: path.join(dir, 'jwks.json'),
        AUTH_ISSUER: ISSUER,
        AUTH_AUDIENCE: AUDIENCE,
      },
    });
    services = [...started.values()];

    const anonymous = getFindings(AUTH_GRPC, IMAGE_A);
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toContain('Code: Unauthenticated');
    const garbage = getFindings(AUTH_GRPC, IMAGE_A, ['-H', 'authorization: Bearer not.a.token']);
    expect(garbage.stderr).toContain('Code: Unauthenticated');
    const noScope = getFindings(AUTH_GRPC, IMAGE_A, ['-H', `authorization: Bearer ${await token('openid profile')}`]);
    expect(noScope.stderr).toContain('Code: PermissionDenied');

    const bearer = ['-H', `authorization: Bearer ${await token('openid thorax.read')}`];
    const found = JSON.parse(ok(getFindings(AUTH_GRPC, IMAGE_A, bearer))) as { result: { id: string; status: string } };
    expect(found.result).toMatchObject({ id: IMAGE_A, status: 'FINDINGS_STATUS_OK' });
    const listed = JSON.parse(ok(call(AUTH_GRPC, 'thorax.v1.ResultsService/ListFindings', { study_uid: STUDY.studyUid }, bearer))) as {
      results: { id: string }[];
    };
    expect(listed.results.map((r) => r.id).sort()).toEqual([IMAGE_A, IMAGE_B]);
    const watch = call(AUTH_GRPC, 'thorax.v1.ResultsService/WatchFindings', { cursor: cursorA }, bearer, 3);
    expect(messages(watch.stdout).map((m) => (m['result'] as { id: string }).id).filter((id) => id.startsWith(RUN))).toEqual([IMAGE_B]);
    const anonymousWatch = call(AUTH_GRPC, 'thorax.v1.ResultsService/WatchFindings', {}, [], 3);
    expect(anonymousWatch.stderr).toContain('Code: Unauthenticated');

    // Open without a token: reflection (grpcurl resolves the service from it) and health.
    expect(ok(grpcurl(AUTH_GRPC, ['describe', 'thorax.v1.ResultsService.GetFindings']))).toContain('rpc GetFindings');
    expect(JSON.parse(ok(call(AUTH_GRPC, 'grpc.health.v1.Health/Check', { service: 'thorax.v1.ResultsService' })))).toEqual({
      status: 'SERVING',
    });
    const probe = run(probeBin, [`-addr=${AUTH_GRPC}`, '-service=thorax.v1.ResultsService', '-rpc-timeout=5s']);
    expect([probe.code, probe.stderr.trim()]).toEqual([0, 'status: SERVING']);
  });

  it('over TLS: grpcurl and grpc_health_probe verify the server certificate; plaintext is refused', async () => {
    await stopAll();
    const cert = path.join(dir, 'tls.crt');
    const key = path.join(dir, 'tls.key');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${SERVER_NAME}`, '-addext', `subjectAltName=DNS:${SERVER_NAME}`, '-keyout', key, '-out', cert],
      { stdio: 'ignore' },
    );
    transports.set(TLS_GRPC, ['-cacert', cert, '-servername', SERVER_NAME]);
    const results = startBuiltService(
      'results',
      {
        KAFKA_BROKERS: testBrokers().join(','),
        LOG_LEVEL: 'info',
        HTTP_PORT: String(TLS_PORTS.results),
        GRPC_PORT: String(TLS_PORTS.resultsGrpc),
        RESULTS_DATA_DIR: path.join(dir, 'results'),
        AUTH_JWKS_FILE: path.join(dir, 'jwks.json'),
        AUTH_ISSUER: ISSUER,
        AUTH_AUDIENCE: AUDIENCE,
        TLS_CERT_FILE: cert,
        TLS_KEY_FILE: key,
      },
      path.join(logDir, 'tls'),
    );
    services = [results];
    // The probe as a Kubernetes exec probe would run it is the readiness check.
    const tlsProbe = [`-addr=${TLS_GRPC}`, '-tls', `-tls-ca-cert=${cert}`, `-tls-server-name=${SERVER_NAME}`, '-service=thorax.v1.ResultsService', '-rpc-timeout=5s'];
    await until(() => results.process.exitCode !== null || run(probeBin, tlsProbe).code === 0, 120_000, 'results over TLS to be SERVING');
    expect(results.process.exitCode).toBeNull();
    expect(run(probeBin, tlsProbe).stderr.trim()).toBe('status: SERVING');

    const bearer = ['-H', `authorization: Bearer ${await token('thorax.admin')}`];
    const found = JSON.parse(ok(getFindings(TLS_GRPC, IMAGE_B, bearer))) as { result: { id: string } };
    expect(found.result.id).toBe(IMAGE_B);
    expect(ok(grpcurl(TLS_GRPC, ['describe', 'thorax.v1.ListFindingsRequest']))).toMatch(/\.google\.protobuf\.Timestamp to = 8;/);
    expect(getFindings(TLS_GRPC, IMAGE_B).stderr).toContain('Code: Unauthenticated');
    // A client that does not trust the certificate, and one speaking plaintext, get nowhere.
    const untrusted = run(grpcurlBin, ['-max-time', '5', TLS_GRPC, 'list']);
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/certificate/);
    const plaintext = run(grpcurlBin, ['-plaintext', '-max-time', '5', TLS_GRPC, 'list']);
    expect(plaintext.code).not.toBe(0);
    expect(run(probeBin, [`-addr=${TLS_GRPC}`, '-rpc-timeout=3s', '-connect-timeout=3s']).code).not.toBe(0);
  });
});
