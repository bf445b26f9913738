import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { createObjectStore, FileObjectStore, ObjectStoreError } from './index';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('FileObjectStore', () => {
  let dir: string;
  let store: FileObjectStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'thorax-objects-'));
    store = new FileObjectStore(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('stores a buffer and returns its file:// uri, sha256 and size', async () => {
    const body = randomBytes(70_000);
    const stored = await store.put('studies/2026/a.dcm', body);
    expect(stored).toEqual({ uri: pathToFileURL(join(dir, 'studies/2026/a.dcm')).href, sha256: sha(body), size: 70_000 });
    expect((await store.get(stored.uri)).equals(body)).toBe(true);
    expect(await store.exists(stored.uri)).toBe(true);
    expect(await store.stat(stored.uri)).toEqual({ size: 70_000 });
    expect(store.keyOf(stored.uri)).toBe('studies/2026/a.dcm');
  });

  it('streams a many-chunk body and hashes it while writing', async () => {
    const chunks = Array.from({ length: 50 }, () => randomBytes(64 * 1024));
    const stored = await store.put('studies/big', Readable.from(chunks));
    const whole = Buffer.concat(chunks);
    expect(stored.size).toBe(whole.length);
    expect(stored.sha256).toBe(sha(whole));
    expect(readdirSync(join(dir, '.tmp'))).toEqual([]);
  });

  it('refuses a buffer over maxBytes, and writes again after its temporary directory was removed', async () => {
    const error = await store.put('review/over', Buffer.alloc(5000, 1), { maxBytes: 4500 }).catch((e: unknown) => e);
    expect((error as ObjectStoreError).kind).toBe('TOO_LARGE');
    expect(readdirSync(join(dir, '.tmp'))).toEqual([]);
    rmSync(join(dir, '.tmp'), { recursive: true });
    const body = randomBytes(3000);
    const stored = await store.put('review/x/1/cam.bin', body);
    expect(stored).toEqual({ uri: pathToFileURL(join(dir, 'review/x/1/cam.bin')).href, sha256: sha(body), size: 3000 });
    expect((await store.get(stored.uri)).equals(body)).toBe(true);
    expect(readdirSync(join(dir, '.tmp'))).toEqual([]);
  });

  it('reads an inclusive byte range', async () => {
    const body = Buffer.from('0123456789');
    const { uri } = await store.put('review/r', body);
    expect((await collect(await store.open(uri, { start: 2, end: 5 }))).toString()).toBe('2345');
    expect((await collect(await store.open(uri))).toString()).toBe('0123456789');
  });

  it('refuses an object over maxBytes and leaves nothing behind', async () => {
    const chunks = Array.from({ length: 10 }, () => Buffer.alloc(1000, 1));
    const error = await store.put('studies/over', Readable.from(chunks), { maxBytes: 4500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ObjectStoreError);
    expect((error as ObjectStoreError).kind).toBe('TOO_LARGE');
    expect(await store.exists(pathToFileURL(join(dir, 'studies/over')).href)).toBe(false);
    expect(readdirSync(join(dir, '.tmp'))).toEqual([]);
  });

  it('replaces an object atomically: a reader sees the old or the new bytes, never a mix', async () => {
    const { uri } = await store.put('studies/x', Buffer.alloc(100_000, 1));
    await store.put('studies/x', Buffer.alloc(100_000, 2));
    const now = await store.get(uri);
    expect(now.every((b) => b === 2)).toBe(true);
  });

  it('keeps a failed stream from producing an object', async () => {
    const failing = new Readable({
      read() {
        this.push(Buffer.alloc(1000));
        this.destroy(new Error('client went away'));
      },
    });
    const error = await store.put('studies/broken', failing).catch((e: unknown) => e);
    expect((error as ObjectStoreError).kind).toBe('UNAVAILABLE');
    expect(readdirSync(join(dir, '.tmp'))).toEqual([]);
    expect(await store.exists(pathToFileURL(join(dir, 'studies/broken')).href)).toBe(false);
  });

  it.each(['../etc/passwd', 'studies/../../x', '/abs', 'studies//x', 'studies/./x', '', 'a\\b', 'studies/.hidden', 'x/'])(
    'rejects the key %j',
    async (key) => {
      const error = await store.put(key, Buffer.from('x')).catch((e: unknown) => e);
      expect((error as ObjectStoreError).kind).toBe('INVALID_KEY');
    },
  );

  it('refuses URIs outside the store (a forged record cannot read other files)', async () => {
    const outside = join(tmpdir(), 'thorax-outside-secret');
    writeFileSync(outside, 'secret');
    try {
      for (const uri of [pathToFileURL(outside).href, `${store.location}/../thorax-outside-secret`, 's3://bucket/x', 'not a uri']) {
        const error = await store.get(uri).catch((e: unknown) => e);
        expect((error as ObjectStoreError).kind).toBe('INVALID_URI');
      }
    } finally {
      rmSync(outside, { force: true });
    }
  });

  it('reports a missing object as NOT_FOUND and deletes idempotently', async () => {
    const { uri } = await store.put('studies/gone', Buffer.from('x'));
    await store.delete(uri);
    await store.delete(uri);
    expect(await store.stat(uri)).toBeNull();
    const error = await store.get(uri).catch((e: unknown) => e);
    expect((error as ObjectStoreError).kind).toBe('NOT_FOUND');
    const openError = await store.open(uri).catch((e: unknown) => e);
    expect((openError as ObjectStoreError).kind).toBe('NOT_FOUND');
  });

  it('lists the objects under a prefix with sizes and times, not the temporary files', async () => {
    await store.put('studies/a/1', Buffer.alloc(3));
    await store.put('studies/b/2', Buffer.alloc(5));
    await store.put('review/3', Buffer.alloc(7));
    writeFileSync(join(dir, '.tmp', 'half.part'), 'x');
    const listed = [];
    for await (const info of store.list('studies/')) listed.push(info);
    expect(listed.map((i) => [i.key, i.size]).sort()).toEqual([
      ['studies/a/1', 3],
      ['studies/b/2', 5],
    ]);
    expect(listed[0]?.lastModified.getTime()).toBeGreaterThan(Date.now() - 60_000);
    const all = [];
    for await (const info of store.list('')) all.push(info.key);
    expect(all.sort()).toEqual(['review/3', 'studies/a/1', 'studies/b/2']);
    const none = [];
    for await (const info of store.list('nothing/')) none.push(info);
    expect(none).toEqual([]);
  });

  it('is what createObjectStore builds for a file:// OBJECT_STORE_URL', async () => {
    const built = createObjectStore({
      OBJECT_STORE_URL: `file://${dir}`,
      OBJECT_STORE_S3_REGION: 'us-east-1',
      OBJECT_STORE_S3_FORCE_PATH_STYLE: false,
      OBJECT_STORE_RETENTION_HOURS: 72,
    });
    expect(built).toBeInstanceOf(FileObjectStore);
    expect(built.location).toBe(pathToFileURL(dir).href);
  });
});
