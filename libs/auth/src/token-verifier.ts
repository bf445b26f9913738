import { createLocalJWKSet, createRemoteJWKSet, type JWTPayload, type JSONWebKeySet, jwtVerify } from 'jose';
import { type AccessLevel, AuthFailure, type InvalidTokenReason } from './auth-failure';

/** Asymmetric JWS algorithms only: a shared-secret (HS*) or unsigned token never verifies. */
export const ACCEPTED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/** Clock skew allowed on exp/nbf/iat between the issuer and this server, seconds. */
export const CLOCK_TOLERANCE_S = 30;

export type KeySource = { kind: 'remote'; url: URL } | { kind: 'local'; jwks: JSONWebKeySet };

export interface TokenVerifierOptions {
  keys: KeySource;
  /** Required `iss`; unset: not checked. */
  issuer?: string | undefined;
  /** Required `aud` (one of the token's audiences); unset: not checked. */
  audience?: string | undefined;
  readScope: string;
  adminScope: string;
  /** Remote key sets: how long fetched keys are trusted before a refetch, ms (default 10 min). */
  cacheMaxAgeMs?: number;
  /** Remote key sets: least time between two fetches when a token names an unknown key, ms (default 30 s). */
  cooldownMs?: number;
  /** Remote key sets: fetch timeout, ms (default 5 s). */
  fetchTimeoutMs?: number;
}

/** Who called: the verified token's subject and what it may do. */
export interface Principal {
  /** `sub`, or `client_id`/`azp` for a client-credentials token; null when the token has none. */
  subject: string | null;
  scopes: ReadonlySet<string>;
  /** The highest level the scopes grant; null when they grant none of this service's levels. */
  level: AccessLevel | null;
}

export type AuthResult = { ok: true; principal: Principal } | { ok: false; failure: AuthFailure };

/**
 * Verifies bearer JWTs (signature against the configured JWK Set, exp/nbf with a small clock
 * tolerance, issuer and audience when configured) and checks the scope an operation needs. Pure:
 * no HTTP framework; the Nest guard and the gRPC interceptor call `check`.
 */
export class TokenVerifier {
  private readonly keySet: ReturnType<typeof createLocalJWKSet> | ReturnType<typeof createRemoteJWKSet>;

  constructor(readonly options: TokenVerifierOptions) {
    this.keySet =
      options.keys.kind === 'remote'
        ? createRemoteJWKSet(options.keys.url, {
            cacheMaxAge: options.cacheMaxAgeMs ?? 600_000,
            cooldownDuration: options.cooldownMs ?? 30_000,
            timeoutDuration: options.fetchTimeoutMs ?? 5_000,
          })
        : createLocalJWKSet(options.keys.jwks);
  }

  /** The scope that grants a level (for `WWW-Authenticate: … scope="…"`). */
  scopeFor(level: AccessLevel): string {
    return level === 'admin' ? this.options.adminScope : this.options.readScope;
  }

  /**
   * Verifies an `Authorization` header value and checks that the token grants `level`. Never
   * throws: a refusal comes back as an AuthFailure with its code.
   */
  async check(authorization: string | undefined, level: AccessLevel): Promise<AuthResult> {
    const token = bearerToken(authorization);
    if (token === null) return { ok: false, failure: new AuthFailure('missing_token') };
    if (token === '') return { ok: false, failure: new AuthFailure('invalid_token', { reason: 'malformed' }) };
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keySet, {
        algorithms: ACCEPTED_ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: ['exp'],
        ...(this.options.issuer !== undefined ? { issuer: this.options.issuer } : {}),
        ...(this.options.audience !== undefined ? { audience: this.options.audience } : {}),
      }));
    } catch (error) {
      return { ok: false, failure: this.failureOf(error) };
    }
    const principal = this.principalOf(payload);
    if (!grants(principal.level, level)) {
      return { ok: false, failure: new AuthFailure('insufficient_scope', { requiredScope: this.scopeFor(level), subject: principal.subject }) };
    }
    return { ok: true, principal };
  }

  private principalOf(payload: JWTPayload): Principal {
    const scopes = scopesOf(payload);
    const level: AccessLevel | null = scopes.has(this.options.adminScope) ? 'admin' : scopes.has(this.options.readScope) ? 'read' : null;
    const subject = [payload.sub, payload['client_id'], payload['azp']].find((v): v is string => typeof v === 'string' && v.length > 0) ?? null;
    return { subject, scopes, level };
  }

  private failureOf(error: unknown): AuthFailure {
    const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
    const invalid = (reason: InvalidTokenReason) => new AuthFailure('invalid_token', { reason, cause: error });
    switch (code) {
      case 'ERR_JWT_EXPIRED':
        return new AuthFailure('expired_token', { cause: error });
      case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
        const claim = (error as { claim?: unknown }).claim;
        return invalid(claim === 'iss' ? 'issuer' : claim === 'aud' ? 'audience' : claim === 'nbf' || claim === 'iat' ? 'not_yet_valid' : 'claims');
      }
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
        return invalid('signature');
      case 'ERR_JOSE_ALG_NOT_ALLOWED':
      case 'ERR_JOSE_NOT_SUPPORTED':
        return invalid('algorithm');
      case 'ERR_JWKS_NO_MATCHING_KEY':
      case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
        return invalid('unknown_key');
      case 'ERR_JWS_INVALID':
      case 'ERR_JWT_INVALID':
      case 'ERR_JWK_INVALID':
        return invalid('malformed');
      default:
        // A remote key set that cannot be fetched (network error, timeout, not 200, not a JWK
        // Set) says nothing about the token: the client may retry.
        if (this.options.keys.kind === 'remote') return new AuthFailure('keys_unavailable', { cause: error });
        return invalid('malformed');
    }
  }
}

/** Whether a principal's level is enough for the level an operation needs (admin implies read). */
export function grants(have: AccessLevel | null, need: AccessLevel): boolean {
  if (have === null) return false;
  return need === 'read' || have === 'admin';
}

/**
 * The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 6750 §2.1);
 * null when there is no bearer credential at all, '' when the header says Bearer but holds no
 * well-formed token.
 */
export function bearerToken(authorization: string | undefined): string | null {
  if (authorization === undefined) return null;
  const match = /^\s*([A-Za-z][A-Za-z0-9._~+-]*)(?:\s+(.*?))?\s*$/.exec(authorization);
  if (!match || match[1]?.toLowerCase() !== 'bearer') return null;
  const token = match[2] ?? '';
  return /^[A-Za-z0-9\-._~+/]+=*$/.test(token) ? token : '';
}

/** Scopes from `scope` (space-separated, RFC 8693/9068) and `scp` (array or space-separated). */
export function scopesOf(payload: JWTPayload): Set<string> {
  const scopes = new Set<string>();
  for (const claim of [payload['scope'], payload['scp']]) {
    const values = typeof claim === 'string' ? claim.split(' ') : Array.isArray(claim) ? claim.filter((v): v is string => typeof v === 'string') : [];
    for (const value of values) if (value.length > 0) scopes.add(value);
  }
  return scopes;
}
