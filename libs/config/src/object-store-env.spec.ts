import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, sharedEnv, z } from './load-config';
import { objectStoreOptions } from './object-store-env';

describe('object-store variables', () => {
  const schema = z.object({ ...sharedEnv });

  it('defaults to a directory store under .cache/objects and a 72-hour sweep', () => {
    const config = loadConfig(schema, {});
    expect(config.OBJECT_STORE_URL).toBe('file://.cache/objects');
    expect(config.OBJECT_STORE_RETENTION_HOURS).toBe(72);
    expect(objectStoreOptions(config)).toEqual({ kind: 'file', url: 'file://.cache/objects', directory: '.cache/objects' });
  });

  it('splits an s3:// URL into bucket and prefix and reads the secret from its file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'thorax-secret-'));
    try {
      writeFileSync(join(dir, 'secret'), 's3cr3t\n');
      const config = loadConfig(schema, {
        OBJECT_STORE_URL: 's3://thorax-objects/prod/eu',
        OBJECT_STORE_S3_ENDPOINT: 'http://minio:9000',
        OBJECT_STORE_S3_ACCESS_KEY_ID: 'AKIA1',
        OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE: join(dir, 'secret'),
        OBJECT_STORE_S3_FORCE_PATH_STYLE: 'true',
      });
      expect(objectStoreOptions(config)).toEqual({
        kind: 's3',
        url: 's3://thorax-objects/prod/eu',
        bucket: 'thorax-objects',
        prefix: 'prod/eu/',
        endpoint: 'http://minio:9000',
        region: 'us-east-1',
        credentials: { accessKeyId: 'AKIA1', secretAccessKey: 's3cr3t' },
        forcePathStyle: true,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the variable of a bad or inconsistent value and never echoes the secret', () => {
    expect(() => loadConfig(schema, { OBJECT_STORE_URL: 'http://x' })).toThrow(/OBJECT_STORE_URL/);
    expect(() => loadConfig(schema, { OBJECT_STORE_URL: 's3://bkt', OBJECT_STORE_S3_ACCESS_KEY_ID: 'A' })).toThrow(
      /OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE/,
    );
    expect(() => loadConfig(schema, { OBJECT_STORE_S3_ENDPOINT: 'http://minio:9000' })).toThrow(/OBJECT_STORE_S3_ENDPOINT: set, but/);
    expect(() => loadConfig(schema, { OBJECT_STORE_RETENTION_HOURS: '-1' })).toThrow(/OBJECT_STORE_RETENTION_HOURS/);
    let message = '';
    try {
      loadConfig(schema, { OBJECT_STORE_URL: 's3://bkt', OBJECT_STORE_S3_SECRET_ACCESS_KEY: 'topsecret', OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE: '/x' });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      message = (error as Error).message;
    }
    expect(message).toMatch(/not both/);
    expect(message).not.toMatch(/topsecret/);
  });

  it('stops on an unreadable secret file', () => {
    const config = loadConfig(schema, {
      OBJECT_STORE_URL: 's3://bkt',
      OBJECT_STORE_S3_ACCESS_KEY_ID: 'A',
      OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE: '/nonexistent/secret',
    });
    expect(() => objectStoreOptions(config)).toThrow(/OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE: cannot read/);
  });
});
