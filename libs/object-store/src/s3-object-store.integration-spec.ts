/**
 * The S3 backend against a running S3 API server (moto's standalone server, started here on a
 * port of its own; scripts/s3-test-server.sh installs it): multipart streaming uploads, digests,
 * ranges, listing with pagination, deletes, refusals, all over HTTP through the AWS SDK.
 */
import { CreateBucketCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createObjectStore, ObjectStoreError, S3ObjectStore } from './index';

jest.setTimeout(120_000);

const ROOT = path.resolve(__dirname, '../../..');
// Below the kernel's ephemeral range (32768-60999), where an outgoing connection can hold a port.
const PORT = Number(process.env['THORAX_S3_TEST_PORT'] ?? 28300);
const ENDPOINT = `http://127.0.0.1:${PORT}`;
const BUCKET = 'thorax-objects';
const credentials = { accessKeyId: 'test-key', secretAccessKey: 'test-secret' };
let server: ChildProcess;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function collectStream(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function store(prefix = 'prod/eu'): S3ObjectStore {
  return createObjectStore({
    kind: 's3',
    url: `s3://${BUCKET}/${prefix}`,
    bucket: BUCKET,
    prefix: prefix ? `${prefix}/` : '',
    endpoint: ENDPOINT,
    region: 'us-east-1',
    credentials,
    forcePathStyle: true,
  }) as S3ObjectStore;
}

beforeAll(async () => {
  const moto = execFileSync('bash', [path.join(ROOT, 'scripts', 's3-test-server.sh'), 'path'], { encoding: 'utf8', timeout: 600_000 }).trim();
  server = spawn(moto, ['-H', '127.0.0.1', '-p', String(PORT)], { stdio: 'ignore' });
  const client = new S3Client({ endpoint: ENDPOINT, region: 'us-east-1', credentials, forcePathStyle: true });
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  client.destroy();
});

afterAll(async () => {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', resolve));
  server.kill('SIGTERM');
  await exited;
});

describe('S3ObjectStore', () => {
  it('streams a 20 MiB body as a multipart upload, hashing it on the way, and reads it back whole and by range', async () => {
    const s3 = store();
    const chunks = Array.from({ length: 20 }, () => randomBytes(1024 * 1024));
    const whole = Buffer.concat(chunks);
    const stored = await s3.put('studies/2026-11-30/big', Readable.from(chunks), { contentType: 'application/dicom' });
    expect(stored).toEqual({ uri: `s3://${BUCKET}/prod/eu/studies/2026-11-30/big`, sha256: sha(whole), size: whole.length });
    expect(sha(await s3.get(stored.uri))).toBe(sha(whole));
    expect(await s3.stat(stored.uri)).toEqual({ size: whole.length });
    const range = await collectStream(await s3.open(stored.uri, { start: 1000, end: 1999 }));
    expect(range.equals(whole.subarray(1000, 2000))).toBe(true);
    await s3.close();
  });

  it('aborts an upload over maxBytes: no object and no multipart upload left behind', async () => {
    const s3 = store();
    const chunks = Array.from({ length: 12 }, () => randomBytes(1024 * 1024));
    const error = await s3.put('studies/over', Readable.from(chunks), { maxBytes: 10 * 1024 * 1024 }).catch((e: unknown) => e);
    expect((error as ObjectStoreError).kind).toBe('TOO_LARGE');
    expect(await s3.exists(`s3://${BUCKET}/prod/eu/studies/over`)).toBe(false);
    const client = new S3Client({ endpoint: ENDPOINT, region: 'us-east-1', credentials, forcePathStyle: true });
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    expect(uploads.Uploads ?? []).toEqual([]);
    client.destroy();
    await s3.close();
  });

  it('lists under a prefix (across pages), deletes idempotently, reports a missing object as NOT_FOUND', async () => {
    const s3 = store('lists');
    for (let i = 0; i < 1005; i++) await s3.put(`studies/p/${String(i).padStart(4, '0')}`, Buffer.from([i % 256]));
    await s3.put('review/keep', Buffer.from('r'));
    const listed: string[] = [];
    for await (const info of s3.list('studies/')) listed.push(info.key);
    expect(listed).toHaveLength(1005);
    expect(listed[0]).toBe('studies/p/0000');
    const uri = `s3://${BUCKET}/lists/studies/p/0007`;
    await s3.delete(uri);
    await s3.delete(uri);
    expect(await s3.stat(uri)).toBeNull();
    expect(((await s3.get(uri).catch((e: unknown) => e)) as ObjectStoreError).kind).toBe('NOT_FOUND');
    await s3.close();
  });

  it('refuses URIs of another bucket or prefix and keys that climb', async () => {
    const s3 = store();
    for (const uri of [`s3://other-bucket/prod/eu/studies/x`, `s3://${BUCKET}/prod/us/studies/x`, `s3://${BUCKET}/prod/eu/../us/x`, 'file:///etc/passwd']) {
      expect(((await s3.get(uri).catch((e: unknown) => e)) as ObjectStoreError).kind).toMatch(/INVALID_URI|INVALID_KEY/);
    }
    expect(((await s3.put('../x', Buffer.from('x')).catch((e: unknown) => e)) as ObjectStoreError).kind).toBe('INVALID_KEY');
    await s3.close();
  });

  it('classifies an unreachable endpoint as UNAVAILABLE (transient)', async () => {
    const s3 = createObjectStore({
      kind: 's3',
      url: `s3://${BUCKET}`,
      bucket: BUCKET,
      prefix: '',
      endpoint: 'http://127.0.0.1:1',
      region: 'us-east-1',
      credentials,
      forcePathStyle: true,
    });
    const error = await s3.stat(`s3://${BUCKET}/studies/x`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ObjectStoreError);
    expect((error as ObjectStoreError).kind).toBe('UNAVAILABLE');
    await s3.close();
  });
});
