import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './config-error';
import { flag } from './env-types';

/**
 * Where claim-checked inputs and review images live (docs/object-store.md): `file://<directory>`
 * (relative directories resolve against the working directory) or `s3://<bucket>[/<prefix>]`.
 */
const objectStoreUrl = z
  .string()
  .trim()
  .default('file://.cache/objects')
  .refine((v) => /^file:\/\/.+/.test(v) || /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(v), {
    message: 'expected file://<directory> or s3://<bucket>[/<prefix>]',
  });

/** Object-store variables every service shares (docs/contract.md, Configuration). */
export const objectStoreEnv = {
  OBJECT_STORE_URL: objectStoreUrl,
  /** S3 endpoint for S3-compatible stores (MinIO, Ceph RGW); AWS when absent. */
  OBJECT_STORE_S3_ENDPOINT: z.string().trim().url().optional(),
  OBJECT_STORE_S3_REGION: z.string().trim().min(1).default('us-east-1'),
  /** Static credentials; when absent the AWS default chain (web identity, instance role) applies. */
  OBJECT_STORE_S3_ACCESS_KEY_ID: z.string().trim().min(1).optional(),
  OBJECT_STORE_S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE: z.string().trim().min(1).optional(),
  /** Path-style addressing (http://endpoint/bucket/key), which most S3-compatible servers need. */
  OBJECT_STORE_S3_FORCE_PATH_STYLE: flag(false),
  /**
   * Backstop for claim-checked inputs (`studies/`) whose result never got stored: objects older
   * than this many hours are deleted by ingest's sweep; 0 switches the sweep off.
   */
  OBJECT_STORE_RETENTION_HOURS: z.coerce.number().min(0).default(72),
};

export type ObjectStoreEnv = z.infer<z.ZodObject<typeof objectStoreEnv>>;

/** Everything needed to open an object store (libs/object-store `createObjectStore`). */
export type ObjectStoreOptions =
  | { kind: 'file'; url: string; directory: string }
  | {
      kind: 's3';
      url: string;
      bucket: string;
      /** Key prefix inside the bucket, '' or ending in '/'. */
      prefix: string;
      endpoint?: string;
      region: string;
      credentials?: { accessKeyId: string; secretAccessKey: string };
      forcePathStyle: boolean;
    };

/** Consistency rules between the object-store variables, checked by loadConfig with the schema. */
export function objectStoreEnvProblems(env: Partial<ObjectStoreEnv>): { variable: string; message: string }[] {
  const problems: { variable: string; message: string }[] = [];
  const s3 = (env.OBJECT_STORE_URL ?? '').startsWith('s3://');
  const secret = Boolean(env.OBJECT_STORE_S3_SECRET_ACCESS_KEY) || Boolean(env.OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE);
  if (env.OBJECT_STORE_S3_SECRET_ACCESS_KEY && env.OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE) {
    problems.push({ variable: 'OBJECT_STORE_S3_SECRET_ACCESS_KEY', message: 'set either OBJECT_STORE_S3_SECRET_ACCESS_KEY or its _FILE, not both' });
  }
  if (Boolean(env.OBJECT_STORE_S3_ACCESS_KEY_ID) !== secret) {
    const variable = env.OBJECT_STORE_S3_ACCESS_KEY_ID ? 'OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE' : 'OBJECT_STORE_S3_ACCESS_KEY_ID';
    problems.push({ variable, message: 'the access key id and the secret access key go together' });
  }
  if (!s3) {
    for (const variable of ['OBJECT_STORE_S3_ENDPOINT', 'OBJECT_STORE_S3_ACCESS_KEY_ID'] as const) {
      if (env[variable]) problems.push({ variable, message: 'set, but OBJECT_STORE_URL is not an s3:// URL' });
    }
  }
  return problems;
}

/**
 * Turns the parsed variables into object-store options, reading the secret file once. A missing
 * or empty file is a ConfigError naming its variable.
 */
export function objectStoreOptions(config: ObjectStoreEnv): ObjectStoreOptions {
  const problems = objectStoreEnvProblems(config).map((p) => `${p.variable}: ${p.message}`);
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  const url = config.OBJECT_STORE_URL;
  if (url.startsWith('file://')) return { kind: 'file', url, directory: url.slice('file://'.length) };
  const [bucket, ...rest] = url.slice('s3://'.length).split('/');
  const prefixPath = rest.filter((s) => s.length > 0).join('/');
  let secretAccessKey = config.OBJECT_STORE_S3_SECRET_ACCESS_KEY;
  const file = config.OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE;
  if (file) {
    try {
      if (!statSync(file).isFile()) throw new Error('not a regular file');
      secretAccessKey = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      if (secretAccessKey.length === 0) throw new Error('empty file');
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new ConfigError(`invalid configuration:\n  OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE: cannot read ${JSON.stringify(file)} (${reason})`);
    }
  }
  const accessKeyId = config.OBJECT_STORE_S3_ACCESS_KEY_ID;
  return {
    kind: 's3',
    url,
    bucket: bucket ?? '',
    prefix: prefixPath ? `${prefixPath}/` : '',
    endpoint: config.OBJECT_STORE_S3_ENDPOINT,
    region: config.OBJECT_STORE_S3_REGION,
    credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
    forcePathStyle: config.OBJECT_STORE_S3_FORCE_PATH_STYLE,
  };
}
