import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from './load-config';

/** PEM certificate chain and private key of a server (HTTPS and gRPC TLS). */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** Subject and expiry of the leaf certificate, for the start-up log line. */
  subject: string;
  validTo: string;
}

/**
 * Reads TLS_CERT_FILE and TLS_KEY_FILE once, at start-up: null when neither is set. The files must
 * hold a PEM certificate and the private key that matches it; anything else is a ConfigError naming
 * the variable.
 */
export function loadServerTls(env: { TLS_CERT_FILE?: string | undefined; TLS_KEY_FILE?: string | undefined }): ServerTls | null {
  if (env.TLS_CERT_FILE === undefined && env.TLS_KEY_FILE === undefined) return null;
  if (env.TLS_CERT_FILE === undefined) throw new ConfigError('invalid configuration:\n  TLS_CERT_FILE: required with TLS_KEY_FILE');
  if (env.TLS_KEY_FILE === undefined) throw new ConfigError('invalid configuration:\n  TLS_KEY_FILE: required with TLS_CERT_FILE');
  const cert = read('TLS_CERT_FILE', env.TLS_CERT_FILE);
  const key = read('TLS_KEY_FILE', env.TLS_KEY_FILE);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new ConfigError(`invalid configuration:\n  TLS_CERT_FILE: not a PEM certificate (${env.TLS_CERT_FILE})`);
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new ConfigError(`invalid configuration:\n  TLS_KEY_FILE: not a PEM private key (${env.TLS_KEY_FILE})`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new ConfigError('invalid configuration:\n  TLS_KEY_FILE: the key does not match the certificate of TLS_CERT_FILE');
  }
  return { cert, key, subject: leaf.subject.replace(/\n/g, ', '), validTo: new Date(leaf.validTo).toISOString() };
}

function read(variable: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError(`invalid configuration:\n  ${variable}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
