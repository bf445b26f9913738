/**
 * Why a request was refused, a closed set. The edges map each to a status: HTTP 401 (with an
 * RFC 6750 `WWW-Authenticate: Bearer` challenge), 403 or 503; gRPC UNAUTHENTICATED,
 * PERMISSION_DENIED or UNAVAILABLE.
 */
export const AUTH_FAILURE_CODES = ['missing_token', 'invalid_token', 'expired_token', 'insufficient_scope', 'keys_unavailable'] as const;
export type AuthFailureCode = (typeof AUTH_FAILURE_CODES)[number];

/**
 * The detail behind invalid_token, for logs and metrics only (clients see one generic message):
 * a closed set too, never the token or its claims.
 */
export const INVALID_TOKEN_REASONS = ['malformed', 'algorithm', 'unknown_key', 'signature', 'issuer', 'audience', 'not_yet_valid', 'claims'] as const;
export type InvalidTokenReason = (typeof INVALID_TOKEN_REASONS)[number];

/** The access level an operation needs; admin implies read. */
export type AccessLevel = 'read' | 'admin';

const STATUS: Record<AuthFailureCode, 401 | 403 | 503> = {
  missing_token: 401,
  invalid_token: 401,
  expired_token: 401,
  insufficient_scope: 403,
  keys_unavailable: 503,
};

const MESSAGE: Record<AuthFailureCode, string> = {
  missing_token: 'a bearer token is required',
  invalid_token: 'the bearer token is not valid',
  expired_token: 'the bearer token has expired',
  insufficient_scope: 'the bearer token lacks the scope this operation needs',
  keys_unavailable: 'the token signing keys cannot be fetched; try again later',
};

export class AuthFailure extends Error {
  override readonly name = 'AuthFailure';
  /** HTTP status: 401, 403 or 503. */
  readonly status: 401 | 403 | 503;

  constructor(
    readonly code: AuthFailureCode,
    readonly details: {
      /** The scope that would have been enough (insufficient_scope). */
      requiredScope?: string;
      reason?: InvalidTokenReason;
      /** `sub` of a token that verified but lacked the scope. */
      subject?: string | null;
      cause?: unknown;
    } = {},
  ) {
    super(MESSAGE[code], details.cause === undefined ? undefined : { cause: details.cause });
    this.status = STATUS[code];
  }

  /**
   * The RFC 6750 `WWW-Authenticate` value for 401 and 403; null for 503. A request without
   * credentials gets a challenge without an error code (RFC 6750 §3.1).
   */
  challenge(realm: string): string | null {
    const params = [`realm="${realm}"`];
    switch (this.code) {
      case 'missing_token':
        break;
      case 'invalid_token':
      case 'expired_token':
        params.push('error="invalid_token"', `error_description="${this.message}"`);
        break;
      case 'insufficient_scope':
        params.push('error="insufficient_scope"', `error_description="${this.message}"`);
        if (this.details.requiredScope) params.push(`scope="${this.details.requiredScope}"`);
        break;
      case 'keys_unavailable':
        return null;
    }
    return `Bearer ${params.join(', ')}`;
  }
}
