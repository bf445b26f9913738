import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';

/** Bytes of one instance kept in memory before the spool moves to a temporary file. */
export const SPOOL_MEMORY_BYTES = 16 * 1024 * 1024;

export interface SpoolOptions {
  /** Beyond this many bytes the spool keeps counting but stores nothing (`overflowed`). */
  maxBytes: number;
  memoryBytes?: number;
  dir?: string;
}

/**
 * Where one received instance waits for its synchronous checks and its hand-over: in memory while
 * small, in a private temporary file (0600) once it passes `memoryBytes`, so a 500 MB multi-frame
 * instance never sits whole on the heap. Past `maxBytes` it drains without storing, so the sender
 * can still be answered. `discard()` removes the file; call it once the instance is handed on.
 */
export class InstanceSpool extends Writable {
  private chunks: Buffer[] = [];
  private file: { path: string; handle: FileHandle | null } | null = null;
  private bytes = 0;
  private over = false;

  constructor(private readonly options: SpoolOptions) {
    // No autoDestroy: the bytes must outlive 'finish' until they are handed on (destroy discards them).
    super({ highWaterMark: 4 * 1024 * 1024, autoDestroy: false });
  }

  get size(): number {
    return this.bytes;
  }

  get overflowed(): boolean {
    return this.over;
  }

  get spilled(): boolean {
    return this.file !== null;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    if (this.over || this.bytes > this.options.maxBytes) {
      this.over = true;
      this.chunks = [];
      done();
      return;
    }
    if (this.file === null && this.bytes <= (this.options.memoryBytes ?? SPOOL_MEMORY_BYTES)) {
      this.chunks.push(chunk);
      done();
      return;
    }
    this.spill(chunk).then(() => done(), done);
  }

  override _final(done: (error?: Error | null) => void): void {
    const file = this.file;
    if (!file?.handle) return done();
    const handle = file.handle;
    file.handle = null;
    handle.close().then(() => done(), done);
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.discard().then(() => done(error), () => done(error));
  }

  /** The first `length` bytes (fewer when the instance is shorter). */
  async prefix(length: number): Promise<Buffer> {
    if (this.file === null) return Buffer.concat(this.chunks).subarray(0, length);
    const handle = await open(this.file.path, 'r');
    try {
      const out = Buffer.alloc(Math.min(length, this.bytes));
      const { bytesRead } = await handle.read(out, 0, out.length, 0);
      return out.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  /** Every byte, in memory (for a deflated dataset, whose header only parses whole). */
  async whole(): Promise<Buffer> {
    return this.file === null ? Buffer.concat(this.chunks) : readFile(this.file.path);
  }

  /** The bytes for the hand-over, after `head`: a Buffer while in memory, else a stream of the file. */
  body(head: Buffer = Buffer.alloc(0)): Buffer | Readable {
    if (this.file === null) return Buffer.concat([head, ...this.chunks]);
    const path = this.file.path;
    return Readable.from(
      (async function* () {
        if (head.length > 0) yield head;
        for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) yield chunk as Buffer;
      })(),
    );
  }

  async discard(): Promise<void> {
    this.chunks = [];
    const file = this.file;
    if (!file) return;
    this.file = null;
    await file.handle?.close().catch(() => undefined);
    await rm(file.path, { force: true });
  }

  private async spill(chunk: Buffer): Promise<void> {
    let file = this.file;
    if (file === null) {
      const path = join(this.options.dir ?? tmpdir(), `thorax-instance-${randomUUID()}.part`);
      const handle = await open(path, 'wx', 0o600);
      file = this.file = { path, handle };
      const held = Buffer.concat(this.chunks);
      this.chunks = [];
      await handle.write(held);
    }
    if (!file.handle) throw new Error('spool written after it was closed');
    await file.handle.write(chunk);
  }
}
