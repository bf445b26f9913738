import { ConfigError } from '@thorax/config';
import type { JSONWebKeySet } from 'jose';
import { readFileSync } from 'node:fs';
import { TokenVerifier } from './token-verifier';

/** The AUTH_* variables of the shared configuration (libs/config apiSecurityEnv). */
export interface AuthEnv {
  AUTH_JWKS_URL?: string | undefined;
  AUTH_JWKS_FILE?: string | undefined;
  AUTH_ISSUER?: string | undefined;
  AUTH_AUDIENCE?: string | undefined;
  AUTH_READ_SCOPE: string;
  AUTH_ADMIN_SCOPE: string;
}

/**
 * The verifier the configuration asks for, or null when API auth is off (neither AUTH_JWKS_URL nor
 * AUTH_JWKS_FILE set). A key set file is read and checked here, once, at start-up; a bad one is a
 * ConfigError naming AUTH_JWKS_FILE.
 */
export function tokenVerifierFromConfig(env: AuthEnv): TokenVerifier | null {
  const common = { issuer: env.AUTH_ISSUER, audience: env.AUTH_AUDIENCE, readScope: env.AUTH_READ_SCOPE, adminScope: env.AUTH_ADMIN_SCOPE };
  if (env.AUTH_JWKS_URL !== undefined) return new TokenVerifier({ keys: { kind: 'remote', url: new URL(env.AUTH_JWKS_URL) }, ...common });
  if (env.AUTH_JWKS_FILE !== undefined) return new TokenVerifier({ keys: { kind: 'local', jwks: readKeySet(env.AUTH_JWKS_FILE) }, ...common });
  return null;
}

/** Where the keys come from, for the start-up log line (never the keys). */
export function describeAuth(env: AuthEnv): Record<string, unknown> {
  return {
    auth: env.AUTH_JWKS_URL !== undefined || env.AUTH_JWKS_FILE !== undefined ? 'bearer-jwt' : 'off',
    jwks: env.AUTH_JWKS_URL ?? env.AUTH_JWKS_FILE ?? null,
    issuer: env.AUTH_ISSUER ?? null,
    audience: env.AUTH_AUDIENCE ?? null,
    readScope: env.AUTH_READ_SCOPE,
    adminScope: env.AUTH_ADMIN_SCOPE,
  };
}

function readKeySet(file: string): JSONWebKeySet {
  const bad = (why: string) => new ConfigError(`invalid configuration:\n  AUTH_JWKS_FILE: ${why} (${file})`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw bad(error instanceof SyntaxError ? 'not JSON' : `cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw bad('expected a JWK Set: { "keys": [ ... ] } with at least one key');
  for (const key of keys) {
    const jwk = key as Record<string, unknown> | null;
    if (typeof jwk !== 'object' || jwk === null || typeof jwk['kty'] !== 'string') throw bad('every key needs a "kty"');
    if (jwk['kty'] === 'oct') throw bad('symmetric ("oct") keys are not accepted; publish the issuer\'s public keys');
    if (jwk['d'] !== undefined) throw bad('the set holds a private key; publish only public keys');
  }
  return parsed as JSONWebKeySet;
}
