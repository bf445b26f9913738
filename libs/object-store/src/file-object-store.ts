import { createHash, randomUUID } from 'node:crypto';
import { type FileHandle, lstat, mkdir, open as openFile, readdir, readFile, rename, rm, stat as statFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { HashingStream } from './hashing-stream';
import {
  type ByteRange,
  checkKey,
  checkPrefix,
  type ObjectInfo,
  type ObjectStore,
  ObjectStoreError,
  type PutOptions,
  type StoredObject,
} from './object-store';

/** Temporary files of unfinished writes, inside the store so the final rename stays on one filesystem. */
const TMP_DIR = '.tmp';

/**
 * Objects as files under one directory. A write goes to a temporary file, is flushed to disk and
 * renamed into place, so readers see a whole object or none. URIs are `file://` URLs of the object's absolute path.
 *
 * A Buffer body is hashed in one call and written through one file handle: open, write, flush,
 * close, rename. These run on libuv's thread pool, which sharp's decodes share in the same
 * process, so every extra call there delays an image.
 */
export class FileObjectStore implements ObjectStore {
  readonly root: string;
  readonly location: string;
  /** The temporary directory once it is known to exist. */
  private tmpReady: Promise<string> | null = null;

  constructor(directory: string) {
    this.root = resolve(directory);
    this.location = pathToFileURL(this.root).href;
  }

  async put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<StoredObject> {
    const target = this.pathOf(checkKey(key));
    const { tmp, handle } = await this.openTemporary(key);
    let written: { sha256: string; size: number };
    try {
      try {
        written = Buffer.isBuffer(body) ? await writeBuffer(handle, body, opts.maxBytes) : await writeStream(handle, body, opts.maxBytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await renameInto(tmp, target);
    } catch (error) {
      await rm(tmp, { force: true });
      throw error instanceof ObjectStoreError ? error : unavailable(`writing ${key}`, error);
    }
    return { uri: this.uriOf(key), ...written };
  }

  /** A new temporary file; the directory is created again if something removed it meanwhile. */
  private async openTemporary(key: string): Promise<{ tmp: string; handle: FileHandle }> {
    for (let attempt = 0; ; attempt++) {
      const tmp = join(await this.tmpDir(), `${randomUUID()}.part`);
      try {
        return { tmp, handle: await openFile(tmp, 'wx', 0o640) };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 0) throw unavailable(`writing ${key}`, error);
        this.tmpReady = null;
      }
    }
  }

  private tmpDir(): Promise<string> {
    const dir = join(this.root, TMP_DIR);
    this.tmpReady ??= mkdir(dir, { recursive: true, mode: 0o750 }).then(
      () => dir,
      (error: unknown) => {
        this.tmpReady = null; // try again on the next put
        throw unavailable('creating its temporary directory', error);
      },
    );
    return this.tmpReady;
  }

  async get(uri: string): Promise<Buffer> {
    try {
      return await readFile(this.pathOf(this.keyOf(uri)));
    } catch (error) {
      throw classify(uri, error);
    }
  }

  async open(uri: string, range?: ByteRange): Promise<Readable> {
    const path = this.pathOf(this.keyOf(uri));
    const handle = await openFile(path, 'r').catch((error: unknown) => {
      throw classify(uri, error);
    });
    return handle.createReadStream({ autoClose: true, ...(range ? { start: range.start, end: range.end } : {}) });
  }

  async stat(uri: string): Promise<{ size: number } | null> {
    try {
      const info = await statFile(this.pathOf(this.keyOf(uri)));
      return info.isFile() ? { size: info.size } : null;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw classify(uri, error);
    }
  }

  async delete(uri: string): Promise<void> {
    const path = this.pathOf(this.keyOf(uri));
    try {
      await rm(path, { force: true });
    } catch (error) {
      throw classify(uri, error);
    }
  }

  async exists(uri: string): Promise<boolean> {
    return (await this.stat(uri)) !== null;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix);
    const start = prefix === '' ? this.root : this.pathOf(prefix.slice(0, -1));
    const pending = [start];
    while (pending.length > 0) {
      const dir = pending.pop() as string;
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw unavailable(`listing ${prefix}`, error);
      }
      for (const entry of entries) {
        const path = join(dir, entry.name);
        if (dir === this.root && entry.name === TMP_DIR) continue;
        if (entry.isDirectory()) pending.push(path);
        else if (entry.isFile()) {
          const info = await lstat(path).catch(() => null);
          if (!info) continue;
          const key = relative(this.root, path).split(sep).join('/');
          yield { uri: this.uriOf(key), key, size: info.size, lastModified: info.mtime };
        }
      }
    }
  }

  keyOf(uri: string): string {
    let path: string;
    try {
      path = fileURLToPath(uri);
    } catch {
      throw new ObjectStoreError('INVALID_URI', 'not a file:// URI of this object store');
    }
    const key = relative(this.root, path);
    if (key === '' || key.startsWith('..') || isAbsolute(key)) {
      throw new ObjectStoreError('INVALID_URI', 'the URI is outside this object store');
    }
    return checkKey(key.split(sep).join('/'));
  }

  /** Nothing to release: every operation opens and closes its own files. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  private pathOf(key: string): string {
    return join(this.root, ...key.split('/'));
  }

  private uriOf(key: string): string {
    return pathToFileURL(this.pathOf(key)).href;
  }
}

async function writeBuffer(handle: FileHandle, body: Buffer, maxBytes = Number.POSITIVE_INFINITY): Promise<{ sha256: string; size: number }> {
  if (body.length > maxBytes) throw new ObjectStoreError('TOO_LARGE', `object larger than ${maxBytes} bytes`);
  await handle.writeFile(body);
  return { sha256: createHash('sha256').update(body).digest('hex'), size: body.length };
}

async function writeStream(handle: FileHandle, body: Readable, maxBytes?: number): Promise<{ sha256: string; size: number }> {
  const hashing = new HashingStream(maxBytes);
  await pipeline(body, hashing, async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) {
      for (let at = 0; at < chunk.length; ) at += (await handle.write(chunk, at)).bytesWritten;
    }
  });
  return { sha256: hashing.digest(), size: hashing.bytes };
}

/** Renames into place, creating the object's directory only when the rename finds it missing. */
async function renameInto(tmp: string, target: string): Promise<void> {
  try {
    await rename(tmp, target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    await mkdir(dirname(target), { recursive: true, mode: 0o750 });
    await rename(tmp, target);
  }
}

function classify(uri: string, error: unknown): ObjectStoreError {
  if (error instanceof ObjectStoreError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') {
    return new ObjectStoreError('NOT_FOUND', `object not found: ${uri}`, { cause: error });
  }
  return unavailable(uri, error);
}

function unavailable(what: string, error: unknown): ObjectStoreError {
  const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  return new ObjectStoreError('UNAVAILABLE', `object store: ${what} failed (${reason})`, { cause: error });
}
