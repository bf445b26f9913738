import 'reflect-metadata';
import { type INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TokenVerifier } from '@thorax/auth';
import { loadConfig } from '@thorax/config';
import { createLogger, ObservabilityModule } from '@thorax/observability';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { INFERENCE_CONFIG, inferenceConfigSchema } from '../config';
import { ModelService } from '../model/model.service';
import { ModelControlService } from './model-control.service';
import type { ControlKey, ModelSelection } from './model-selection';
import { ModelsAdminController } from './models.admin-controller';

const COMMITTED = path.resolve(__dirname, '../../../../models/thorax-tiny-cnn');

/** The control topic as the controller sees it: records each change; `fail` makes this replica's apply fail. */
class FakeControl {
  available = true;
  fail: string | null = null;
  readonly changes: { key: ControlKey; next: ModelSelection; by: string | null }[] = [];
  readonly topic = 'thorax.inference.control.v1';
  get state() {
    return { topic: this.topic, state: this.available ? 'available' : 'missing', lastError: null, desired: null };
  }
  async change(key: ControlKey, next: ModelSelection, by: string | null) {
    this.changes.push({ key, next, by });
    const failed = this.fail !== null && this.changes.length === 1;
    if (!failed) models.selection = next;
    return { outcome: failed ? { ok: false as const, error: this.fail as string } : { ok: true as const }, position: `0:${this.changes.length}` };
  }
}

const models = {
  selection: { primary: '1.0.0', canary: null, shadow: null } as ModelSelection,
  slots: { primary: null, canary: null, shadow: null },
};

let dir: string;
let app: INestApplication;
let base: string;
let control: FakeControl;
let sign: (scope: string) => Promise<string>;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'thorax-admin-'));
  const [version] = (await readdir(COMMITTED)).sort().reverse();
  await mkdir(path.join(dir, '1.0.0'));
  await mkdir(path.join(dir, '2.0.0'));
  await mkdir(path.join(dir, '3.0.0'));
  await copyFile(path.join(COMMITTED, version as string, 'model.onnx'), path.join(dir, '1.0.0', 'model.onnx'));
  await copyFile(path.join(COMMITTED, version as string, 'model.onnx'), path.join(dir, '2.0.0', 'model.onnx'));
  await writeFile(path.join(dir, '3.0.0', 'model.onnx'), 'not an ONNX file');

  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
  const verifier = new TokenVerifier({ keys: { kind: 'local', jwks: { keys: [jwk] } }, readScope: 'thorax.read', adminScope: 'thorax.admin' });
  sign = (scope) =>
    new SignJWT({ scope }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setSubject('ops@example').setIssuedAt().setExpirationTime('5m').sign(privateKey);

  control = new FakeControl();
  const logger = createLogger({ service: 'inference', version: '1', level: 'silent' });
  @Module({
    imports: [ObservabilityModule.forRoot({ service: 'inference', version: '1', logLevel: 'silent', logger, auth: verifier })],
    controllers: [ModelsAdminController],
    providers: [
      { provide: INFERENCE_CONFIG, useValue: loadConfig(inferenceConfigSchema, { MODEL_DIR: dir }) },
      { provide: ModelService, useValue: models },
      { provide: ModelControlService, useValue: control },
    ],
  })
  class TestModule {}
  app = await NestFactory.create(TestModule, { logger: false, bodyParser: false });
  await app.listen(0, '127.0.0.1');
  base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
});

afterAll(async () => {
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

async function call(method: string, route: string, token: string | null, body?: unknown): Promise<{ status: number; body: { error?: { code: string; message: string } } & Record<string, unknown> }> {
  const res = await fetch(`${base}/v1/models${route}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } & Record<string, unknown> };
}

describe('model admin API', () => {
  beforeEach(() => {
    control.changes.length = 0;
    control.fail = null;
    control.available = true;
    models.selection = { primary: '1.0.0', canary: null, shadow: null };
  });

  it('needs a token with the admin scope: 401 without, 403 with read only', async () => {
    expect((await call('GET', '', null)).status).toBe(401);
    expect((await call('GET', '', await sign('thorax.read'))).status).toBe(403);
    expect((await call('PUT', '/active', await sign('thorax.read'), { version: '2.0.0' })).status).toBe(403);
    expect(control.changes).toEqual([]);
    const listed = await call('GET', '', await sign('thorax.admin'));
    expect(listed.status).toBe(200);
    expect(listed.body).toMatchObject({ modelDir: dir, versions: [{ version: '1.0.0' }, { version: '2.0.0' }, { version: '3.0.0' }], selection: { primary: '1.0.0' } });
  });

  it('writes each change to the control topic with the caller as its author', async () => {
    const admin = await sign('thorax.admin scope.other');
    expect((await call('PUT', '/active', admin, { version: '2.0.0' })).status).toBe(200);
    expect((await call('PUT', '/canary', admin, { version: '1.0.0', percent: 12.5 })).status).toBe(200);
    expect((await call('PUT', '/shadow', admin, { version: '1.0.0' })).status).toBe(200);
    expect((await call('DELETE', '/canary', admin)).status).toBe(200);
    expect((await call('PUT', '/active', admin, { version: null })).status).toBe(200);
    expect(control.changes.map((c) => [c.key, c.next, c.by])).toEqual([
      ['primary', { primary: '2.0.0', canary: null, shadow: null }, 'ops@example'],
      ['canary', { primary: '2.0.0', canary: { version: '1.0.0', percent: 12.5 }, shadow: null }, 'ops@example'],
      ['shadow', { primary: '2.0.0', canary: { version: '1.0.0', percent: 12.5 }, shadow: '1.0.0' }, 'ops@example'],
      ['canary', { primary: '2.0.0', canary: null, shadow: '1.0.0' }, 'ops@example'],
      ['primary', { primary: null, canary: null, shadow: '1.0.0' }, 'ops@example'],
    ]);
  });

  it('refuses bad requests before anything is written: 400, 404, 422', async () => {
    const admin = await sign('thorax.admin');
    const cases: [string, string, unknown, number, string][] = [
      ['PUT', '/active', { version: '../x' }, 400, 'INVALID_ARGUMENT'],
      ['PUT', '/active', {}, 400, 'INVALID_ARGUMENT'],
      ['PUT', '/canary', { version: '2.0.0', percent: 101 }, 400, 'INVALID_ARGUMENT'],
      ['PUT', '/shadow', { version: null }, 400, 'INVALID_ARGUMENT'],
      ['PUT', '/active', { version: '9.9.9' }, 404, 'NOT_FOUND'],
      ['PUT', '/active', { version: '3.0.0' }, 422, 'FAILED_PRECONDITION'],
    ];
    for (const [method, route, body, status, code] of cases) {
      const answer = await call(method, route, admin, body);
      expect({ route, body, status: answer.status, code: answer.body.error?.code }).toEqual({ route, body, status, code });
    }
    const notJson = await fetch(`${base}/v1/models/active`, { method: 'PUT', headers: { authorization: `Bearer ${admin}`, 'content-type': 'text/plain' }, body: '2.0.0' });
    expect(notJson.status).toBe(400);
    expect(control.changes).toEqual([]);
  });

  it('withdraws a change that failed to load here, and answers 422', async () => {
    control.fail = 'onnxruntime: bad graph';
    const answer = await call('PUT', '/active', await sign('thorax.admin'), { version: '2.0.0' });
    expect(answer).toMatchObject({ status: 422, body: { error: { code: 'FAILED_PRECONDITION', message: expect.stringContaining('onnxruntime: bad graph') } } });
    expect(control.changes.map((c) => [c.key, c.next.primary])).toEqual([
      ['primary', '2.0.0'],
      ['primary', '1.0.0'],
    ]);
  });

  it('refuses changes with 503 when the control topic is not available', async () => {
    control.available = false;
    const answer = await call('PUT', '/shadow', await sign('thorax.admin'), { version: '2.0.0' });
    expect(answer).toMatchObject({ status: 503, body: { error: { code: 'UNAVAILABLE' } } });
    expect(control.changes).toEqual([]);
  });
});
