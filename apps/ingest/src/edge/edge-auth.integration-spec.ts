/**
 * Bearer-token auth on ingest's write edges, on the built service (its own ports, 28480-28489, below the kernel's ephemeral range):
 * POST /v1/studies and gRPC IngestService need the admin scope (401 / UNAUTHENTICATED without a
 * valid token, 403 / PERMISSION_DENIED with read only); health stays open. Real broker.
 */
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { IngestServiceClient, type SubmitStudyRequest, type SubmitStudyResponse } from '@thorax/contracts';
import { REPO_ROOT, type RunningService, startBuiltService, testBrokers, waitForService } from '@thorax/testing';
import { type CryptoKey, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

jest.setTimeout(120_000);

const HTTP = 28481;
const GRPC = 28482;
const dir = mkdtempSync(path.join(tmpdir(), 'thorax-ingest-auth-'));
const png = readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'imaging', 'valid', 'grey8.png'));
let ingest: RunningService;
let key: CryptoKey;
let client: IngestServiceClient;

const token = (scope: string, signer: CryptoKey = key) =>
  new SignJWT({ scope }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('modality-1').setIssuedAt().setExpirationTime('5m').sign(signer);

function post(auth?: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${HTTP}/v1/studies?id=auth-${Date.now()}-${Math.random()}`, {
    method: 'POST',
    body: new Uint8Array(png),
    headers: { 'content-type': 'image/png', ...(auth ? { authorization: `Bearer ${auth}` } : {}) },
  });
}

function submit(auth?: string): Promise<{ error: ServiceError | null; response?: SubmitStudyResponse }> {
  const metadata = new Metadata();
  if (auth) metadata.set('authorization', `Bearer ${auth}`);
  const request: SubmitStudyRequest = { id: `auth-grpc-${Date.now()}-${Math.random()}`, contentType: 'image/png', data: png, study: undefined, priority: 0 };
  return new Promise((resolve) => client.submitStudy(request, metadata, (error, response) => resolve({ error, response })));
}

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  key = pair.privateKey;
  writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] }));
  ingest = startBuiltService(
    'ingest',
    {
      KAFKA_BROKERS: testBrokers().join(','),
      HTTP_PORT: String(HTTP),
      GRPC_PORT: String(GRPC),
      AUTH_JWKS_FILE: path.join(dir, 'jwks.json'),
      OBJECT_STORE_URL: `file://${path.join(dir, 'objects')}`,
      LOG_LEVEL: 'warn',
    },
    path.join(REPO_ROOT, '.data', 'test-logs', `ingest-auth-${Date.now().toString(36)}`),
  );
  await waitForService(ingest, `http://127.0.0.1:${HTTP}/readyz`, 90_000);
  client = new IngestServiceClient(`127.0.0.1:${GRPC}`, credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await ingest?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('auth on the ingest edges', () => {
  it('HTTP: 401 without or with a forged token, 403 with the read scope, 202 with admin; health open', async () => {
    expect((await post()).status).toBe(401);
    expect((await post(await token('thorax.admin', (await generateKeyPair('RS256')).privateKey))).status).toBe(401);
    const readOnly = await post(await token('thorax.read'));
    expect(readOnly.status).toBe(403);
    expect(await readOnly.json()).toMatchObject({ error: { code: 'PERMISSION_DENIED' } });
    expect((await post(await token('thorax.admin'))).status).toBe(202);
    expect((await fetch(`http://127.0.0.1:${HTTP}/healthz`)).status).toBe(200);
  });

  it('gRPC: UNAUTHENTICATED without a token, PERMISSION_DENIED with read only, the id with admin', async () => {
    expect((await submit()).error?.code).toBe(status.UNAUTHENTICATED);
    expect((await submit(await token('thorax.read'))).error?.code).toBe(status.PERMISSION_DENIED);
    const ok = await submit(await token('thorax.admin'));
    expect(ok.error).toBeNull();
    expect(ok.response?.id).toMatch(/^auth-grpc-/);
  });
});
