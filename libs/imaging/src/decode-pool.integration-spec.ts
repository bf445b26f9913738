/**
 * The decode pool with real worker threads (the compiled worker from `node scripts/build.mjs`,
 * which `npm test` runs before this suite): results equal the inline decode, an overrunning
 * decode fails with DECODE_TIMEOUT, and the pool keeps decoding afterwards; PNG and JPEG are
 * decoded on sharp directly, not in a worker.
 */
import { ThoraxError } from '@thorax/contracts';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DecodePool } from './decode-pool';
import { DEFAULT_WIRE_OPTIONS, toWireImage } from './wire-image';

jest.setTimeout(120_000);

const ROOT = path.resolve(__dirname, '../../..');
const WORKER = path.join(ROOT, 'dist/libs/imaging/src/decode.worker.js');
const fixture = (file: string) => readFileSync(path.join(ROOT, 'test/fixtures/imaging', file));

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return error instanceof ThoraxError ? error.code : `unclassified ${(error as Error).message}`;
  }
}

describe('DecodePool (worker threads)', () => {
  beforeAll(() => {
    if (!existsSync(WORKER)) throw new Error(`${WORKER} missing: run \`node scripts/build.mjs\` first`);
  });

  it('decodes in workers exactly as inline, several at once', async () => {
    const pool = new DecodePool({ wire: DEFAULT_WIRE_OPTIONS, workers: 2, workerHeapMb: 512, workerScript: WORKER });
    try {
      expect(pool.mode).toBe('workers');
      const files = ['valid/j2k-lossless.dcm', 'valid/jpeg-ls-lossless.dcm', 'valid/grey16.png', 'valid/jpeg-baseline-ybr422.dcm', 'valid/rle-mono1.dcm'];
      const [pooled, inline] = await Promise.all([
        Promise.all(files.map((f) => pool.decode(fixture(f)))),
        Promise.all(files.map((f) => toWireImage(fixture(f)))),
      ]);
      pooled.forEach((w, i) => {
        expect(Buffer.from(w.pixels).equals(Buffer.from(inline[i]?.pixels ?? []))).toBe(true);
        expect(w.source).toEqual(inline[i]?.source);
      });
      expect(await codeOf(pool.decode(fixture('hostile/bomb-j2k-siz-40000.dcm')))).toBe('IMAGE_TOO_LARGE');
      expect(await codeOf(pool.decode(fixture('hostile/garbage-jpeg-ls.dcm')))).toBe('CORRUPT_IMAGE');
    } finally {
      await pool.close();
    }
  });

  it('passes files through one shared buffer per worker, grown when a larger one comes, and larger files transferred', async () => {
    // 10 KB (a 64 KiB buffer), 143 KB (grown), 36 KB (old bytes past its end), 369 KB (grown), 206 KB, 139 KB.
    const files = ['valid/j2k-lossy.dcm', 'valid/j2k-lossless.dcm', 'valid/jpeg-baseline-mono8.dcm', 'valid/rgb-planar.dcm', 'valid/rle-mono1.dcm', 'valid/jpeg-ls-lossless.dcm'];
    const inline = await Promise.all(files.map((f) => toWireImage(fixture(f))));
    for (const sharedInputMaxBytes of [undefined, 2048]) {
      const pool = new DecodePool({ wire: DEFAULT_WIRE_OPTIONS, workers: 1, workerHeapMb: 512, workerScript: WORKER, ...(sharedInputMaxBytes ? { sharedInputMaxBytes } : {}) });
      try {
        for (const [i, f] of files.entries()) {
          const w = await pool.decode(fixture(f));
          expect({ f, same: Buffer.from(w.pixels).equals(Buffer.from(inline[i]?.pixels ?? [])) }).toEqual({ f, same: true });
        }
      } finally {
        await pool.close();
      }
    }
  });

  it('runs PNG/JPEG on sharp at most `workers` at a time, queued ones in turn; close refuses the queued', async () => {
    const pool = new DecodePool({ wire: DEFAULT_WIRE_OPTIONS, workers: 1, workerHeapMb: 512, workerScript: WORKER });
    const files = ['valid/grey8.png', 'valid/grey.jpg', 'valid/grey16.png', 'valid/rgb.png'];
    try {
      const [pooled, inline] = await Promise.all([
        Promise.all(files.map((f) => pool.decode(fixture(f)))),
        Promise.all(files.map((f) => toWireImage(fixture(f)))),
      ]);
      pooled.forEach((w, i) => expect(Buffer.from(w.pixels).equals(Buffer.from(inline[i]?.pixels ?? []))).toBe(true));
      const outcomes = Promise.all([codeOf(pool.decode(fixture('valid/grey16.png'))), codeOf(pool.decode(fixture('valid/grey8.png')))]);
      await pool.close();
      expect(await outcomes).toEqual(['ok', 'INTERNAL_ERROR']);
    } finally {
      await pool.close();
    }
  });

  it('stops a decode that overruns its time limit and keeps serving', async () => {
    const pool = new DecodePool({ wire: { ...DEFAULT_WIRE_OPTIONS, decodeTimeoutMs: 1 }, workers: 1, workerHeapMb: 512, workerScript: WORKER });
    try {
      expect(await codeOf(pool.decode(fixture('valid/j2k-lossless.dcm')))).toBe('DECODE_TIMEOUT');
      expect(await codeOf(pool.decode(fixture('valid/jpeg-ls-lossless.dcm')))).toBe('DECODE_TIMEOUT');
      // PNG and JPEG run on sharp directly, under the same limit.
      expect(await codeOf(pool.decode(fixture('valid/grey16.png')))).toBe('DECODE_TIMEOUT');
    } finally {
      await pool.close();
    }
  });

  it('replaces a worker stuck in a decode and runs the queued work on the new one', async () => {
    // A stand-in worker that never returns for input starting with byte 1 (an endless decode).
    const dir = mkdtempSync(path.join(tmpdir(), 'thorax-pool-'));
    const script = path.join(dir, 'spin.worker.js');
    writeFileSync(
      script,
      `const { parentPort } = require('node:worker_threads');
let shared;
parentPort.on('message', (r) => {
  if (r.shared) shared = r.shared;
  const bytes = r.bytes ? new Uint8Array(r.bytes) : new Uint8Array(shared, 0, r.length);
  if (bytes[0] === 1) for (;;) {}
  const pixels = new Uint8Array([7, 7, 7, 7]);
  parentPort.postMessage({ id: r.id, ok: true, wire: { pixels, width: 2, height: 2, source: {} } }, [pixels.buffer]);
});`,
    );
    const pool = new DecodePool({ wire: { ...DEFAULT_WIRE_OPTIONS, decodeTimeoutMs: 1500 }, workers: 1, workerHeapMb: 128, workerScript: script });
    try {
      expect(await codeOf(pool.decode(Uint8Array.of(0)))).toBe('ok');
      const [stuck, queued] = await Promise.all([codeOf(pool.decode(Uint8Array.of(1))), codeOf(pool.decode(Uint8Array.of(0)))]);
      expect({ stuck, queued }).toEqual({ stuck: 'DECODE_TIMEOUT', queued: 'ok' });
      expect(Array.from((await pool.decode(Uint8Array.of(0))).pixels)).toEqual([7, 7, 7, 7]);
      // PNG and JPEG never reach a worker: the stand-in would answer 2 x 2.
      const png = await pool.decode(fixture('valid/grey8.png'));
      expect(Buffer.from(png.pixels).equals(Buffer.from((await toWireImage(fixture('valid/grey8.png'))).pixels))).toBe(true);
    } finally {
      await pool.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
