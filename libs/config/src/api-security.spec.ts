import { loadConfig, sharedEnv, z } from './load-config';

describe('API security variables', () => {
  const schema = z.object({ ...sharedEnv });

  it('defaults: auth and TLS off, the standard scopes', () => {
    const config = loadConfig(schema, {});
    expect([config.AUTH_JWKS_URL, config.AUTH_JWKS_FILE, config.TLS_CERT_FILE]).toEqual([undefined, undefined, undefined]);
    expect([config.AUTH_READ_SCOPE, config.AUTH_ADMIN_SCOPE]).toEqual(['thorax.read', 'thorax.admin']);
  });

  it('names a missing file, a bad URL, a pair half set and two key sources', () => {
    expect(() => loadConfig(schema, { TLS_CERT_FILE: '/nonexistent/cert.pem', TLS_KEY_FILE: __filename })).toThrow(/TLS_CERT_FILE: expected a readable file \(ENOENT\)/);
    expect(() => loadConfig(schema, { AUTH_JWKS_URL: 'ftp://idp/jwks' })).toThrow(/AUTH_JWKS_URL/);
    expect(() => loadConfig(schema, { TLS_CERT_FILE: __filename })).toThrow(/TLS_KEY_FILE: required with TLS_CERT_FILE/);
    expect(() => loadConfig(schema, { AUTH_JWKS_URL: 'https://idp/jwks', AUTH_JWKS_FILE: __filename })).toThrow(/AUTH_JWKS_FILE: set AUTH_JWKS_URL or AUTH_JWKS_FILE, not both/);
    expect(() => loadConfig(schema, { AUTH_READ_SCOPE: 'two scopes' })).toThrow(/AUTH_READ_SCOPE/);
  });
});
