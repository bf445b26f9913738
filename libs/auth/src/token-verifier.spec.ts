import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuthFailure } from './auth-failure';
import { tokenVerifierFromConfig } from './from-config';
import { bearerToken, grants, scopesOf, TokenVerifier } from './token-verifier';

const ISSUER = 'https://idp.example.org/';
const AUDIENCE = 'thorax-api';
let signingKey: CryptoKey;
let otherKey: CryptoKey;
let publicJwk: JWK;
let verifier: TokenVerifier;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  signingKey = pair.privateKey;
  otherKey = (await generateKeyPair('ES256')).privateKey;
  publicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  verifier = new TokenVerifier({ keys: { kind: 'local', jwks: { keys: [publicJwk] } }, issuer: ISSUER, audience: AUDIENCE, readScope: 'thorax.read', adminScope: 'thorax.admin' });
});

function token(claims: Record<string, unknown>, options: { key?: CryptoKey; kid?: string; exp?: number | string; iss?: string; aud?: string } = {}): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: options.kid ?? 'k1' })
    .setSubject('svc-ehr')
    .setIssuer(options.iss ?? ISSUER)
    .setAudience(options.aud ?? AUDIENCE)
    .setIssuedAt();
  jwt.setExpirationTime(options.exp ?? '5m');
  return jwt.sign(options.key ?? signingKey);
}

async function failure(header: string | undefined, level: 'read' | 'admin' = 'read'): Promise<AuthFailure> {
  const result = await verifier.check(header, level);
  if (result.ok) throw new Error('expected a refusal');
  return result.failure;
}

describe('TokenVerifier', () => {
  it('accepts a valid token with the read scope and reports subject and level', async () => {
    const result = await verifier.check(`Bearer ${await token({ scope: 'openid thorax.read' })}`, 'read');
    expect(result).toEqual({ ok: true, principal: { subject: 'svc-ehr', scopes: new Set(['openid', 'thorax.read']), level: 'read' } });
  });

  it('admin implies read; read does not grant admin', async () => {
    const admin = `Bearer ${await token({ scp: ['thorax.admin'] })}`;
    expect((await verifier.check(admin, 'read')).ok).toBe(true);
    expect((await verifier.check(admin, 'admin')).ok).toBe(true);
    const read = await failure(`Bearer ${await token({ scope: 'thorax.read' })}`, 'admin');
    expect(read.code).toBe('insufficient_scope');
    expect(read.status).toBe(403);
    expect(read.challenge('thorax')).toBe(
      'Bearer realm="thorax", error="insufficient_scope", error_description="the bearer token lacks the scope this operation needs", scope="thorax.admin"',
    );
  });

  it('refuses with the right code: missing, malformed, expired, wrong issuer/audience/key, unknown kid, no scope', async () => {
    expect((await failure(undefined)).code).toBe('missing_token');
    expect((await failure('Basic dXNlcjpwdw==')).code).toBe('missing_token');
    expect((await failure(undefined)).challenge('thorax')).toBe('Bearer realm="thorax"');
    const garbage = await failure('Bearer not-a-jwt');
    expect([garbage.code, garbage.details.reason, garbage.status]).toEqual(['invalid_token', 'malformed', 401]);
    expect(garbage.challenge('thorax')).toContain('error="invalid_token"');
    expect((await failure('Bearer two tokens')).details.reason).toBe('malformed');
    const expired = await failure(`Bearer ${await token({ scope: 'thorax.read' }, { exp: Math.floor(Date.now() / 1000) - 120 })}`);
    expect([expired.code, expired.status]).toEqual(['expired_token', 401]);
    expect(expired.challenge('thorax')).toContain('error="invalid_token"');
    expect((await failure(`Bearer ${await token({ scope: 'thorax.read' }, { iss: 'https://evil.example/' })}`)).details.reason).toBe('issuer');
    expect((await failure(`Bearer ${await token({ scope: 'thorax.read' }, { aud: 'other-api' })}`)).details.reason).toBe('audience');
    expect((await failure(`Bearer ${await token({ scope: 'thorax.read' }, { key: otherKey })}`)).details.reason).toBe('signature');
    expect((await failure(`Bearer ${await token({ scope: 'thorax.read' }, { kid: 'k9' })}`)).details.reason).toBe('unknown_key');
    const none = await failure(`Bearer ${await token({ scope: 'openid' })}`);
    expect([none.code, none.status, none.details.subject]).toEqual(['insufficient_scope', 403, 'svc-ehr']);
  });

  it('refuses unsigned and shared-secret tokens, and tokens without exp', async () => {
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const unsigned = `${b64({ alg: 'none' })}.${b64({ sub: 'x', scope: 'thorax.admin', exp: 9_999_999_999 })}.`;
    expect((await failure(`Bearer ${unsigned}`)).code).toBe('invalid_token');
    const hs = await new SignJWT({ scope: 'thorax.read' }).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).setExpirationTime('5m').sign(new Uint8Array(32));
    expect((await failure(`Bearer ${hs}`)).details.reason).toBe('algorithm');
    const noExp = await new SignJWT({ scope: 'thorax.read' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(ISSUER).setAudience(AUDIENCE).sign(signingKey);
    expect((await failure(`Bearer ${noExp}`)).details.reason).toBe('claims');
  });

  it('a remote key set that cannot be fetched is keys_unavailable (503), not a bad token', async () => {
    const remote = new TokenVerifier({ keys: { kind: 'remote', url: new URL('http://127.0.0.1:1/jwks.json') }, readScope: 'r', adminScope: 'a', fetchTimeoutMs: 2000 });
    const result = await remote.check(`Bearer ${await token({ scope: 'r' })}`, 'read');
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect([result.failure.code, result.failure.status]).toEqual(['keys_unavailable', 503]);
      expect(result.failure.challenge('thorax')).toBeNull();
    }
  });
});

describe('helpers', () => {
  it('bearerToken parses RFC 6750 credentials', () => {
    expect(bearerToken(undefined)).toBeNull();
    expect(bearerToken('Basic abc')).toBeNull();
    expect(bearerToken('bearer abc.def.ghi')).toBe('abc.def.ghi');
    expect(bearerToken('Bearer')).toBe('');
    expect(bearerToken('Bearer a b')).toBe('');
  });

  it('scopesOf reads scope and scp', () => {
    expect([...scopesOf({ scope: 'a b  c' })]).toEqual(['a', 'b', 'c']);
    expect([...scopesOf({ scp: ['x', 3, 'y'] })]).toEqual(['x', 'y']);
    expect([...scopesOf({ scp: 'x y', scope: 'z' })].sort()).toEqual(['x', 'y', 'z']);
    expect(scopesOf({}).size).toBe(0);
  });

  it('grants: admin implies read', () => {
    expect([grants('admin', 'read'), grants('admin', 'admin'), grants('read', 'read'), grants('read', 'admin'), grants(null, 'read')]).toEqual([true, true, true, false, false]);
  });
});

describe('tokenVerifierFromConfig', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'thorax-auth-'));
  const env = { AUTH_READ_SCOPE: 'thorax.read', AUTH_ADMIN_SCOPE: 'thorax.admin' };

  it('is off without a key source', () => {
    expect(tokenVerifierFromConfig(env)).toBeNull();
  });

  it('reads a JWK Set file and names AUTH_JWKS_FILE when it is bad', async () => {
    const good = path.join(dir, 'jwks.json');
    writeFileSync(good, JSON.stringify({ keys: [publicJwk] }));
    const fromFile = tokenVerifierFromConfig({ ...env, AUTH_JWKS_FILE: good, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE });
    expect((await fromFile!.check(`Bearer ${await token({ scope: 'thorax.read' })}`, 'read')).ok).toBe(true);
    const write = (name: string, body: string) => {
      writeFileSync(path.join(dir, name), body);
      return path.join(dir, name);
    };
    expect(() => tokenVerifierFromConfig({ ...env, AUTH_JWKS_FILE: write('bad.json', '{') })).toThrow(/AUTH_JWKS_FILE: not JSON/);
    expect(() => tokenVerifierFromConfig({ ...env, AUTH_JWKS_FILE: write('empty.json', '{"keys":[]}') })).toThrow(/AUTH_JWKS_FILE: expected a JWK Set/);
    expect(() => tokenVerifierFromConfig({ ...env, AUTH_JWKS_FILE: write('oct.json', '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}') })).toThrow(/AUTH_JWKS_FILE: symmetric/);
    expect(() => tokenVerifierFromConfig({ ...env, AUTH_JWKS_FILE: write('priv.json', JSON.stringify({ keys: [{ ...publicJwk, d: 'x' }] })) })).toThrow(/private key/);
  });
});
