import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadServerTls } from './server-tls';

describe('loadServerTls', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'thorax-tls-'));
  const selfSigned = (name: string) => {
    const cert = path.join(dir, `${name}.crt`);
    const key = path.join(dir, `${name}.key`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
    return { cert, key };
  };

  it('is off without files and reads a matching pair', () => {
    expect(loadServerTls({})).toBeNull();
    const a = selfSigned('a.example');
    const tls = loadServerTls({ TLS_CERT_FILE: a.cert, TLS_KEY_FILE: a.key });
    expect(tls?.subject).toBe('CN=a.example');
    expect(tls?.cert.toString()).toContain('BEGIN CERTIFICATE');
  });

  it('names the variable: a key that does not match, a file that is not PEM', () => {
    const a = selfSigned('a2.example');
    const b = selfSigned('b.example');
    expect(() => loadServerTls({ TLS_CERT_FILE: a.cert, TLS_KEY_FILE: b.key })).toThrow(/TLS_KEY_FILE: the key does not match/);
    expect(() => loadServerTls({ TLS_CERT_FILE: __filename, TLS_KEY_FILE: a.key })).toThrow(/TLS_CERT_FILE: not a PEM certificate/);
    expect(() => loadServerTls({ TLS_CERT_FILE: a.cert, TLS_KEY_FILE: a.cert })).toThrow(/TLS_KEY_FILE: not a PEM private key/);
    expect(() => loadServerTls({ TLS_CERT_FILE: a.cert })).toThrow(/TLS_KEY_FILE: required/);
  });
});
