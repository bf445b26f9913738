import { type ChannelCredentials, type ClientDuplexStream, credentials, type GrpcObject, loadPackageDefinition, Metadata, type ServiceClientConstructor, type ServiceError, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { INestApplication } from '@nestjs/common';
import { tokenVerifierFromConfig } from '@thorax/auth';
import { loadConfig, loadServerTls } from '@thorax/config';
import { type GetFindingsResponse, type ListFindingsResponse, ResultsServiceClient } from '@thorax/contracts';
import { createLogger, ThoraxMetrics } from '@thorax/observability';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import type { TLSSocket } from 'node:tls';
import path from 'node:path';
import { resultsConfigSchema } from './config';
import { FindingsReader } from './findings/findings-reader.service';
import { ResultsGrpcController } from './grpc/results.grpc-controller';
import { GrpcServer } from './grpc/grpc-server';
import { migrate } from './store/migrations';
import { PgliteSqlClient } from './store/pglite-sql-client';
import type { SqlClient } from './store/sql-client';
import { sqlResultsStore } from './store/sql-results-store';
import type { ResultsStore } from './store/results-store.port';
import { StudiesReader } from './studies/studies-reader.service';
import { okEvent } from './testing/findings-events';
import { storeOne } from './testing/store-one';
import { startResultsHttp } from './testing/results-http-app';

jest.setTimeout(60_000);

/**
 * API authentication and TLS on real servers (ports 24000-24999): REST, FHIR and gRPC with bearer
 * JWTs verified against a JWK Set file, then HTTPS and gRPC over TLS (a self-signed certificate
 * made with openssl) verifying against a JWK Set served by URL.
 */
const PORTS = { http: 24080, grpc: 24051, https: 24443, grpcTls: 24052, jwks: 24090 };
const ISSUER = 'https://idp.hospital.example/realms/radiology';
const AUDIENCE = 'thorax-results';
const STUDY = '1.2.826.0.1.3680043.8.498.77';
const ACCESSION_SYSTEM = 'urn:oid:1.2.826.0.1.3680043.8.498.9';
/** The name in the test certificate (and its SAN) that clients verify. */
const SERVER_NAME = 'results.thorax.test';

const dir = mkdtempSync(path.join(tmpdir(), 'thorax-api-auth-'));
const log = createLogger({ service: 'results-test', version: '0', level: 'silent' });

let db: SqlClient;
let repo: ResultsStore;
let signingKey: CryptoKey;
let strangerKey: CryptoKey;
let publicJwk: JWK;

beforeAll(async () => {
  db = await PgliteSqlClient.open('memory://');
  await migrate(db);
  repo = sqlResultsStore(db);
  await storeOne(repo, okEvent('auth-img-1', { study: { studyUid: STUDY, accession: 'ACC-77', patientId: 'MRN-77', viewPosition: 'PA' }, positives: ['Effusion'] }));
  const pair = await generateKeyPair('RS256');
  signingKey = pair.privateKey;
  strangerKey = (await generateKeyPair('RS256')).privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'radiology-2026', alg: 'RS256', use: 'sig' };
  writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify({ keys: [publicJwk] }));
});

afterAll(async () => {
  await db?.close();
});

interface TokenOptions {
  scope?: string;
  key?: CryptoKey;
  issuer?: string;
  audience?: string;
  expiresAt?: number | string;
}

function token(options: TokenOptions = {}): Promise<string> {
  return new SignJWT(options.scope === undefined ? {} : { scope: options.scope })
    .setProtectedHeader({ alg: 'RS256', kid: 'radiology-2026', typ: 'at+jwt' })
    .setSubject('ehr-gateway')
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(options.expiresAt ?? '5m')
    .sign(options.key ?? signingKey);
}

/** Every kind of token the servers must tell apart, by the status REST/FHIR and gRPC answer. */
async function tokenCases(): Promise<Array<{ name: string; authorization: string | undefined; http: number; grpc: status }>> {
  const past = Math.floor(Date.now() / 1000) - 3600;
  return [
    { name: 'no token', authorization: undefined, http: 401, grpc: status.UNAUTHENTICATED },
    { name: 'garbage', authorization: 'Bearer this.is.garbage', http: 401, grpc: status.UNAUTHENTICATED },
    { name: 'expired', authorization: `Bearer ${await token({ scope: 'thorax.read', expiresAt: past })}`, http: 401, grpc: status.UNAUTHENTICATED },
    { name: 'wrong issuer', authorization: `Bearer ${await token({ scope: 'thorax.read', issuer: 'https://idp.elsewhere.example/' })}`, http: 401, grpc: status.UNAUTHENTICATED },
    { name: 'wrong audience', authorization: `Bearer ${await token({ scope: 'thorax.read', audience: 'billing' })}`, http: 401, grpc: status.UNAUTHENTICATED },
    { name: 'wrong key', authorization: `Bearer ${await token({ scope: 'thorax.read', key: strangerKey })}`, http: 401, grpc: status.UNAUTHENTICATED },
    { name: 'no scope', authorization: `Bearer ${await token({ scope: 'openid profile' })}`, http: 403, grpc: status.PERMISSION_DENIED },
    { name: 'read', authorization: `Bearer ${await token({ scope: 'openid thorax.read' })}`, http: 200, grpc: status.OK },
    { name: 'admin', authorization: `Bearer ${await token({ scope: 'thorax.admin' })}`, http: 200, grpc: status.OK },
  ];
}

function grpcStack(options: { port: number; auth: ReturnType<typeof tokenVerifierFromConfig>; tls: ReturnType<typeof loadServerTls>; metrics?: ThoraxMetrics }): GrpcServer {
  const controller = new ResultsGrpcController(new FindingsReader(repo.findings, repo.feed, { watchPollMs: 60_000 }), new StudiesReader(repo.studies), log);
  return new GrpcServer({ host: '127.0.0.1', port: options.port, shutdownGraceMs: 1000, auth: options.auth, tls: options.tls }, controller, log, repo.health, options.metrics);
}

function grpcClients(address: string, channel: ChannelCredentials, options: Record<string, string> = {}) {
  const client = new ResultsServiceClient(address, channel, options);
  const definition = loadSync('health/v1/health.proto', { includeDirs: [path.resolve(path.dirname(healthProtoPath), '..', '..')], enums: String });
  const grpcPackage = loadPackageDefinition(definition) as unknown as { grpc: { health: { v1: GrpcObject } } };
  const Health = grpcPackage.grpc.health.v1['Health'] as ServiceClientConstructor;
  const health = new Health(address, channel, options);
  const meta = (authorization: string | undefined) => {
    const m = new Metadata();
    if (authorization !== undefined) m.set('authorization', authorization);
    return m;
  };
  const reflectionDefinition = loadSync('grpc/reflection/v1/reflection.proto', {
    includeDirs: [path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto')],
  });
  const reflectionPackage = loadPackageDefinition(reflectionDefinition) as unknown as { grpc: { reflection: { v1: GrpcObject } } };
  const Reflection = reflectionPackage.grpc.reflection.v1['ServerReflection'] as ServiceClientConstructor;
  const reflection = new Reflection(address, channel, options);
  return {
    close: () => {
      client.close();
      health.close();
      reflection.close();
    },
    /** Service names listed by server reflection, without a token. */
    listServices: () =>
      new Promise<string[]>((resolve, reject) => {
        type ListServices = { listServicesResponse?: { service: Array<{ name: string }> } };
        const stream = reflection['ServerReflectionInfo']!() as ClientDuplexStream<unknown, ListServices>;
        stream.on('data', (response: ListServices) => {
          resolve((response.listServicesResponse?.service ?? []).map((s) => s.name).sort());
          stream.end();
        });
        stream.on('error', reject);
        stream.write({ listServices: '' });
      }),
    getFindings: (authorization: string | undefined) =>
      new Promise<{ code: status; details: string; response?: GetFindingsResponse }>((resolve) =>
        client.getFindings({ id: 'auth-img-1', modelVersion: '' }, meta(authorization), (error: ServiceError | null, response) =>
          resolve(error ? { code: error.code, details: error.details } : { code: status.OK, details: '', response }),
        ),
      ),
    listFindings: (authorization: string | undefined) =>
      new Promise<{ code: status; response?: ListFindingsResponse }>((resolve) =>
        client.listFindings(
          { studyUid: STUDY, accession: '', status: '', positiveLabel: '', pageSize: 10, pageToken: '', from: undefined, to: undefined },
          meta(authorization),
          (error: ServiceError | null, response) => resolve(error ? { code: error.code } : { code: status.OK, response }),
        ),
      ),
    /** WatchFindings from the beginning: the first message's image id, or the status that ended it. */
    watchFirst: (authorization: string | undefined) =>
      new Promise<{ code: status; firstId?: string }>((resolve) => {
        const stream = client.watchFindings({ cursor: '0' }, meta(authorization));
        stream.on('data', (message: { result?: { id: string } }) => {
          resolve({ code: status.OK, firstId: message.result?.id });
          stream.cancel();
        });
        stream.on('error', (error: ServiceError) => resolve({ code: error.code }));
      }),
    getStudy: (authorization: string | undefined) =>
      new Promise<{ code: status; studyUid?: string }>((resolve) =>
        client.getStudy({ studyUid: STUDY }, meta(authorization), (error: ServiceError | null, response) =>
          resolve(error ? { code: error.code } : { code: status.OK, studyUid: response?.study?.studyUid }),
        ),
      ),
    health: () =>
      new Promise<{ code: status; status?: string }>((resolve) =>
        health['check']!({ service: 'thorax.v1.ResultsService' }, (error: ServiceError | null, response?: { status: string }) =>
          resolve(error ? { code: error.code } : { code: status.OK, status: response?.status }),
        ),
      ),
  };
}

describe('bearer JWTs from a JWK Set file (AUTH_JWKS_FILE)', () => {
  let app: INestApplication;
  let url: string;
  let grpc: GrpcServer;
  let clients: ReturnType<typeof grpcClients>;
  const metrics = new ThoraxMetrics('results');

  beforeAll(async () => {
    const config = loadConfig(resultsConfigSchema, { AUTH_JWKS_FILE: path.join(dir, 'jwks.json'), AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE });
    const auth = tokenVerifierFromConfig(config);
    expect(auth).not.toBeNull();
    ({ app, url } = await startResultsHttp(repo, { accessionSystem: ACCESSION_SYSTEM }, { auth, port: PORTS.http }));
    grpc = grpcStack({ port: PORTS.grpc, auth, tls: null, metrics });
    await grpc.start();
    clients = grpcClients(`127.0.0.1:${PORTS.grpc}`, credentials.createInsecure());
  });

  afterAll(async () => {
    clients?.close();
    await grpc?.stop();
    await app?.close();
  });

  const get = async (p: string, authorization?: string) => {
    const res = await fetch(`${url}${p}`, { headers: authorization ? { authorization } : {} });
    return { status: res.status, challenge: res.headers.get('www-authenticate'), type: res.headers.get('content-type') ?? '', body: (await res.json()) as Record<string, unknown> };
  };

  it('REST and FHIR: 401 without or with a bad token, 403 without the scope, 200 with read or admin', async () => {
    const cases = await tokenCases();
    const table: string[] = [];
    for (const c of cases) {
      for (const p of [`/v1/findings?studyUid=${STUDY}`, '/v1/findings/auth-img-1', `/v1/studies/${STUDY}`, '/fhir/DiagnosticReport?identifier=ACC-77', `/fhir/ImagingStudy?identifier=${ACCESSION_SYSTEM}|ACC-77`]) {
        const res = await get(p, c.authorization);
        table.push(`${c.name} ${p.split('?')[0]} ${res.status}`);
        expect(`${c.name} ${p} ${res.status}`).toBe(`${c.name} ${p} ${c.http}`);
      }
    }
    expect(table).toHaveLength(cases.length * 5);
  });

  it('REST refusals: the service error body and RFC 6750 challenges', async () => {
    const none = await get('/v1/findings/auth-img-1');
    expect(none.body).toEqual({ error: { code: 'UNAUTHENTICATED', message: 'a bearer token is required' } });
    expect(none.challenge).toBe('Bearer realm="thorax"');
    const expired = await get('/v1/findings/auth-img-1', `Bearer ${await token({ scope: 'thorax.read', expiresAt: Math.floor(Date.now() / 1000) - 3600 })}`);
    expect(expired.body).toEqual({ error: { code: 'UNAUTHENTICATED', message: 'the bearer token has expired' } });
    expect(expired.challenge).toBe('Bearer realm="thorax", error="invalid_token", error_description="the bearer token has expired"');
    const garbage = await get('/v1/studies/x', 'Bearer abc');
    expect(garbage.challenge).toBe('Bearer realm="thorax", error="invalid_token", error_description="the bearer token is not valid"');
    const scopeless = await get(`/v1/studies/${STUDY}`, `Bearer ${await token({ scope: 'openid' })}`);
    expect(scopeless.body).toEqual({ error: { code: 'PERMISSION_DENIED', message: 'the bearer token lacks the scope this operation needs' } });
    expect(scopeless.challenge).toBe('Bearer realm="thorax", error="insufficient_scope", error_description="the bearer token lacks the scope this operation needs", scope="thorax.read"');
    const ok = await get('/v1/findings/auth-img-1', `Bearer ${await token({ scope: 'thorax.read' })}`);
    expect(ok.body).toMatchObject({ id: 'auth-img-1', status: 'ok', positives: ['Effusion'] });
    expect(ok.challenge).toBeNull();
  });

  it('FHIR refusals are OperationOutcomes (login, forbidden); the CapabilityStatement is public', async () => {
    const none = await get('/fhir/DiagnosticReport?identifier=ACC-77');
    expect(none.type).toContain('application/fhir+json');
    expect(none.challenge).toBe('Bearer realm="thorax"');
    expect(none.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', diagnostics: 'a bearer token is required' }] });
    const scopeless = await get('/fhir/DiagnosticReport?identifier=ACC-77', `Bearer ${await token({ scope: 'openid' })}`);
    expect(scopeless.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ code: 'forbidden' }] });
    const bundle = await get('/fhir/DiagnosticReport?identifier=ACC-77', `Bearer ${await token({ scope: 'thorax.read' })}`);
    expect(bundle.body).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 1 });
    const metadata = await get('/fhir/metadata');
    expect([metadata.status, metadata.body['resourceType']]).toEqual([200, 'CapabilityStatement']);
    // It tells clients how to authenticate.
    expect((metadata.body['rest'] as Array<Record<string, unknown>>)[0]?.['security']).toMatchObject({
      service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'OAuth' }] }],
      description: expect.stringContaining('`thorax.read` scope'),
    });
  });

  it('health, readiness, metrics and the OpenAPI document stay open', async () => {
    for (const p of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
      const res = await fetch(`${url}${p}`);
      expect(`${p} ${res.status}`).toBe(`${p} 200`);
    }
  });

  it('gRPC: UNAUTHENTICATED, PERMISSION_DENIED and OK from the authorization metadata; health open; refusals counted', async () => {
    for (const c of await tokenCases()) {
      const got = await clients.getFindings(c.authorization);
      expect(`${c.name} GetFindings ${status[got.code]}`).toBe(`${c.name} GetFindings ${status[c.grpc]}`);
      const listed = await clients.listFindings(c.authorization);
      expect(`${c.name} ListFindings ${status[listed.code]}`).toBe(`${c.name} ListFindings ${status[c.grpc]}`);
      if (c.grpc === status.OK) {
        expect(got.response?.result?.id).toBe('auth-img-1');
        expect(listed.response?.results.map((r) => r.id)).toEqual(['auth-img-1']);
      }
    }
    expect((await clients.getFindings(undefined)).details).toBe('a bearer token is required');
    // The server stream and GetStudy too: nothing is streamed before the token is verified.
    const read = `Bearer ${await token({ scope: 'thorax.read' })}`;
    expect(await clients.watchFirst(undefined)).toEqual({ code: status.UNAUTHENTICATED });
    expect(await clients.watchFirst(`Bearer ${await token({ scope: 'openid' })}`)).toEqual({ code: status.PERMISSION_DENIED });
    expect(await clients.watchFirst(read)).toEqual({ code: status.OK, firstId: 'auth-img-1' });
    expect(await clients.getStudy(undefined)).toEqual({ code: status.UNAUTHENTICATED });
    expect(await clients.getStudy(read)).toEqual({ code: status.OK, studyUid: STUDY });
    expect(await clients.health()).toEqual({ code: status.OK, status: 'SERVING' });
    // Reflection answers without a token too (it lists the services the server exposes).
    expect(await clients.listServices()).toEqual([
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
      'thorax.v1.ResultsService',
    ]);
    const text = await metrics.registry.metrics();
    const handled = (method: string, code: string) =>
      Number(new RegExp(`thorax_grpc_server_handled_total\\{[^}]*grpc_method="${method}"[^}]*grpc_code="${code}"[^}]*\\} (\\d+)`).exec(text)?.[1] ?? 0);
    // Per method: 6 token cases end UNAUTHENTICATED (+1 extra call), 1 PERMISSION_DENIED, 2 OK.
    expect([handled('GetFindings', 'UNAUTHENTICATED'), handled('GetFindings', 'PERMISSION_DENIED'), handled('GetFindings', 'OK')]).toEqual([7, 1, 2]);
    expect([handled('ListFindings', 'UNAUTHENTICATED'), handled('ListFindings', 'PERMISSION_DENIED'), handled('ListFindings', 'OK')]).toEqual([6, 1, 2]);
  });
});

describe('HTTPS and gRPC TLS, keys from a JWK Set URL (AUTH_JWKS_URL)', () => {
  let jwksServer: HttpServer;
  let jwksFetches = 0;
  let app: INestApplication;
  let url: string;
  let grpc: GrpcServer;
  let ca: Buffer;

  beforeAll(async () => {
    const cert = path.join(dir, 'server.crt');
    const key = path.join(dir, 'server.key');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=results.thorax.test', '-addext', 'subjectAltName=DNS:results.thorax.test,DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert],
      { stdio: 'ignore' },
    );
    ca = readFileSync(cert);
    jwksServer = createServer((req, res) => {
      if (req.url !== '/.well-known/jwks.json') {
        res.writeHead(404).end();
        return;
      }
      jwksFetches += 1;
      res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys: [publicJwk] }));
    });
    await new Promise<void>((resolve) => jwksServer.listen(PORTS.jwks, '127.0.0.1', resolve));
    const config = loadConfig(resultsConfigSchema, {
      AUTH_JWKS_URL: `http://127.0.0.1:${PORTS.jwks}/.well-known/jwks.json`,
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
      TLS_CERT_FILE: cert,
      TLS_KEY_FILE: key,
    });
    const tls = loadServerTls(config);
    expect(tls?.subject).toBe('CN=results.thorax.test');
    const auth = tokenVerifierFromConfig(config);
    ({ app, url } = await startResultsHttp(repo, {}, { auth, tls, port: PORTS.https }));
    grpc = grpcStack({ port: PORTS.grpcTls, auth, tls });
    await grpc.start();
  });

  afterAll(async () => {
    await grpc?.stop();
    await app?.close();
    await new Promise((resolve) => jwksServer?.close(resolve));
  });

  /** GET over HTTPS trusting only the test certificate. */
  const httpsGet = (p: string, authorization?: string) =>
    new Promise<{ status: number; body: string; protocol: string }>((resolve, reject) => {
      const req = httpsRequest(`${url}${p}`, { ca, servername: SERVER_NAME, headers: authorization ? { authorization } : {} }, (res) => {
        const protocol = (res.socket as TLSSocket).getProtocol() ?? '';
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, protocol }));
      });
      req.on('error', reject);
      req.end();
    });

  it('HTTPS: verified by a client trusting the certificate; tokens checked against the fetched (and cached) key set', async () => {
    expect(url).toBe(`https://127.0.0.1:${PORTS.https}`);
    const health = await httpsGet('/healthz');
    expect(health.status).toBe(200);
    expect(['TLSv1.2', 'TLSv1.3']).toContain(health.protocol);
    expect((await httpsGet('/v1/findings/auth-img-1')).status).toBe(401);
    const read = `Bearer ${await token({ scope: 'thorax.read' })}`;
    const ok = await httpsGet('/v1/findings/auth-img-1', read);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ id: 'auth-img-1' });
    expect((await httpsGet(`/v1/studies/${STUDY}`, read)).status).toBe(200);
    expect((await httpsGet('/v1/findings/auth-img-1', `Bearer ${await token({ scope: 'thorax.read', key: strangerKey })}`)).status).toBe(401);
    expect(jwksFetches).toBe(1);
    // A client that does not trust the certificate is refused by its own TLS check; plain HTTP gets nothing.
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    await expect(fetch(`http://127.0.0.1:${PORTS.https}/healthz`)).rejects.toThrow();
  });

  it('gRPC over TLS: a client trusting the certificate gets statuses by token; a plaintext client cannot connect', async () => {
    const secure = grpcClients(`127.0.0.1:${PORTS.grpcTls}`, credentials.createSsl(ca), { 'grpc.ssl_target_name_override': SERVER_NAME });
    const plain = grpcClients(`127.0.0.1:${PORTS.grpcTls}`, credentials.createInsecure());
    try {
      expect(await secure.health()).toEqual({ code: status.OK, status: 'SERVING' });
      expect((await secure.getFindings(undefined)).code).toBe(status.UNAUTHENTICATED);
      expect((await secure.getFindings(`Bearer ${await token({ scope: 'openid' })}`)).code).toBe(status.PERMISSION_DENIED);
      const ok = await secure.getFindings(`Bearer ${await token({ scope: 'thorax.read' })}`);
      expect([ok.code, ok.response?.result?.id]).toEqual([status.OK, 'auth-img-1']);
      expect((await plain.health()).code).toBe(status.UNAVAILABLE);
    } finally {
      secure.close();
      plain.close();
    }
  });
});
