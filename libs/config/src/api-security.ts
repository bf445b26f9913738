import { accessSync, constants, statSync } from 'node:fs';
import { z } from 'zod';

/** A path to a regular file this process can read; checked at start-up, the path is kept. */
export const readableFile = () =>
  z
    .string()
    .min(1)
    .superRefine((file, ctx) => {
      try {
        if (!statSync(file).isFile()) throw new Error('not a regular file');
        accessSync(file, constants.R_OK);
      } catch (error) {
        const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
        ctx.addIssue({ code: 'custom', message: `expected a readable file (${reason})` });
      }
    });

/** An OAuth scope name (RFC 6749 scope-token: printable ASCII without space, quote or backslash). */
const scopeToken = (fallback: string) =>
  z
    .string()
    .regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'expected one scope name (no spaces)')
    .default(fallback);

/**
 * API authentication (bearer JWTs) and server TLS, shared by every service. Auth is on when
 * AUTH_JWKS_URL or AUTH_JWKS_FILE is set; HTTPS and gRPC TLS when TLS_CERT_FILE and TLS_KEY_FILE are.
 */
export const apiSecurityEnv = {
  /** JWK Set of the token issuer, fetched and cached (https://idp.example.org/.well-known/jwks.json). */
  AUTH_JWKS_URL: z
    .string()
    .url()
    .regex(/^https?:\/\//, 'expected an http(s) URL')
    .optional(),
  /** A local JWK Set file (JSON `{ "keys": [...] }`), read at start-up; instead of AUTH_JWKS_URL. */
  AUTH_JWKS_FILE: readableFile().optional(),
  /** Required `iss` claim; unset: not checked. */
  AUTH_ISSUER: z.string().min(1).optional(),
  /** Required `aud` claim (one of the token's audiences); unset: not checked. */
  AUTH_AUDIENCE: z.string().min(1).optional(),
  /** Scope that grants the read APIs. */
  AUTH_READ_SCOPE: scopeToken('thorax.read'),
  /** Scope that grants the admin (mutating) APIs; it implies the read scope. */
  AUTH_ADMIN_SCOPE: scopeToken('thorax.admin'),
  /** PEM certificate chain of the HTTP and gRPC servers (with TLS_KEY_FILE: HTTPS and gRPC TLS). */
  TLS_CERT_FILE: readableFile().optional(),
  /** PEM private key of TLS_CERT_FILE. */
  TLS_KEY_FILE: readableFile().optional(),
};

/** Rules across the variables above, as `VARIABLE: problem` lines (empty when consistent). */
export function apiSecurityProblems(env: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (env['AUTH_JWKS_URL'] !== undefined && env['AUTH_JWKS_FILE'] !== undefined) {
    problems.push('AUTH_JWKS_FILE: set AUTH_JWKS_URL or AUTH_JWKS_FILE, not both');
  }
  const cert = env['TLS_CERT_FILE'] !== undefined;
  const key = env['TLS_KEY_FILE'] !== undefined;
  if (cert && !key) problems.push('TLS_KEY_FILE: required with TLS_CERT_FILE');
  if (key && !cert) problems.push('TLS_CERT_FILE: required with TLS_KEY_FILE');
  return problems;
}
