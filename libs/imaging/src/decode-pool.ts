import { type ErrorCode, isErrorCode, ThoraxError } from '@thorax/contracts';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { sniffMediaType } from './media-type';
import { toWireImage, type WireImage, type WireImageOptions } from './wire-image';

/**
 * One file for a worker: in the first `length` bytes of the slot's shared input buffer (sent
 * along when it is new, remembered by the worker), or, for a file larger than
 * SHARED_INPUT_MAX_BYTES, in `bytes` (transferred).
 */
export interface DecodeRequest {
  id: number;
  length: number;
  shared?: SharedArrayBuffer;
  bytes?: ArrayBuffer;
  options: WireImageOptions;
}

/**
 * Largest file passed through a slot's shared input buffer (each slot and its worker keep one
 * buffer of at most this size). A fresh transferred buffer per file costs the worker a full
 * garbage collection every image or two (V8 counts each as new external memory): 10-20 ms of
 * CPU per 10 MB DICOM, more than the copy.
 */
export const SHARED_INPUT_MAX_BYTES = 64 * 1024 * 1024;

export type DecodeReply = { id: number; ok: true; wire: WireImage } | { id: number; ok: false; code: string; message: string };

export interface DecodePoolOptions {
  wire: WireImageOptions;
  /** Worker threads decoding in parallel. */
  workers: number;
  /** V8 heap cap per worker, MiB (worker_threads resourceLimits). */
  workerHeapMb: number;
  /** Compiled worker script; defaults to decode.worker.js beside this module (absent under ts-jest). */
  workerScript?: string;
  /** Largest file passed through a slot's shared input buffer; defaults to SHARED_INPUT_MAX_BYTES. */
  sharedInputMaxBytes?: number;
}

interface Job {
  id: number;
  bytes: Uint8Array;
  resolve: (wire: WireImage) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | null;
  timer: NodeJS.Timeout | null;
  /** Input buffer shared with this slot's worker only (a replaced worker's slot gets a new one). */
  shared: SharedArrayBuffer | null;
}

const stage = 'preprocess' as const;

/**
 * Decodes images off the event loop with a hard time limit. DICOM goes to worker threads (its
 * WASM codecs and pixel loops block the thread they run on): a decode that overruns
 * `decodeTimeoutMs` fails with DECODE_TIMEOUT and its worker is terminated and replaced, so a
 * pathological file costs one worker restart, never a stuck consumer. PNG and JPEG run directly
 * on sharp, whose libvips work is on libuv's thread pool already: a worker hop only adds a copy
 * and a message each way (measured by `npm run bench:decode`, docs/imaging.md). They too run at
 * most `workers` at a time; their limit is sharp's own `timeout()` plus the same limit on the
 * promise. Without a compiled worker script
 * (unit tests run TypeScript in place) DICOM decodes inline too.
 */
export class DecodePool {
  readonly mode: 'workers' | 'inline';
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  /** PNG/JPEG decodes running on sharp, and those waiting for one of `workers` places. */
  private direct = 0;
  private readonly directWaiting: (() => void)[] = [];
  private nextId = 1;
  private closed = false;
  private readonly script: string;

  constructor(private readonly options: DecodePoolOptions) {
    this.script = options.workerScript ?? path.join(__dirname, 'decode.worker.js');
    this.mode = existsSync(this.script) ? 'workers' : 'inline';
    if (this.mode === 'workers') for (let i = 0; i < Math.max(1, options.workers); i += 1) this.slots.push(this.spawn());
  }

  decode(bytes: Uint8Array): Promise<WireImage> {
    if (this.closed) return Promise.reject(new ThoraxError('INTERNAL_ERROR', 'decode pool is closed', { stage, transient: true }));
    const type = sniffMediaType(bytes);
    if (type === 'image/png' || type === 'image/jpeg') return this.onSharp(bytes);
    if (this.mode === 'inline') return this.inline(bytes);
    return new Promise<WireImage>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, bytes, resolve, reject });
      this.pump();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new ThoraxError('INTERNAL_ERROR', 'decode pool closed', { stage, transient: true }));
    // Waiting PNG/JPEG decodes wake holding a place, find the pool closed and give it back.
    for (const wake of this.directWaiting.splice(0)) {
      this.direct += 1;
      wake();
    }
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()));
  }

  /**
   * PNG/JPEG on sharp, at most `workers` at a time, like the DICOM workers: decoded images are
   * held in memory while they run (docs/imaging.md); the time limit starts when one begins.
   */
  private async onSharp(bytes: Uint8Array): Promise<WireImage> {
    if (this.direct < Math.max(1, this.options.workers)) this.direct += 1;
    else await new Promise<void>((resolve) => this.directWaiting.push(resolve));
    try {
      if (this.closed) throw new ThoraxError('INTERNAL_ERROR', 'decode pool closed', { stage, transient: true });
      return await this.inline(bytes);
    } finally {
      const next = this.directWaiting.shift();
      if (next) next();
      else this.direct -= 1;
    }
  }

  private async inline(bytes: Uint8Array): Promise<WireImage> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.timeoutError()), this.options.wire.decodeTimeoutMs);
    });
    try {
      return await Promise.race([toWireImage(bytes, this.options.wire), deadline]);
    } catch (error) {
      if (error instanceof ThoraxError) throw error;
      throw new ThoraxError('CORRUPT_IMAGE', `decoder failed: ${(error as Error)?.message ?? String(error)}`, { stage });
    } finally {
      clearTimeout(timer);
    }
  }

  private timeoutError(): ThoraxError {
    return new ThoraxError('DECODE_TIMEOUT', `decoding took longer than ${this.options.wire.decodeTimeoutMs} ms`, { stage });
  }

  private spawn(): Slot {
    const worker = new Worker(this.script, {
      resourceLimits: { maxOldGenerationSizeMb: this.options.workerHeapMb, maxYoungGenerationSizeMb: 64 },
    });
    const slot: Slot = { worker, job: null, timer: null, shared: null };
    worker.on('message', (reply: DecodeReply) => this.finish(slot, reply));
    worker.on('error', (error: Error & { code?: string }) => {
      const code: ErrorCode = error.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'IMAGE_TOO_LARGE' : 'CORRUPT_IMAGE';
      this.replace(slot, new ThoraxError(code, `decoder worker failed: ${error.message}`, { stage }));
    });
    worker.on('exit', () => {
      if (!this.closed && this.slots.includes(slot)) this.replace(slot, new ThoraxError('CORRUPT_IMAGE', 'decoder worker exited', { stage }));
    });
    worker.unref();
    return slot;
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (slot.job || this.queue.length === 0) continue;
      const job = this.queue.shift() as Job;
      slot.job = job;
      slot.timer = setTimeout(() => this.replace(slot, this.timeoutError()), this.options.wire.decodeTimeoutMs);
      const length = job.bytes.byteLength;
      const sharedMax = this.options.sharedInputMaxBytes ?? SHARED_INPUT_MAX_BYTES;
      if (length > sharedMax) {
        const copy = new Uint8Array(job.bytes);
        const request: DecodeRequest = { id: job.id, length, bytes: copy.buffer, options: this.options.wire };
        slot.worker.postMessage(request, [copy.buffer]);
        continue;
      }
      const request: DecodeRequest = { id: job.id, length, options: this.options.wire };
      if (!slot.shared || slot.shared.byteLength < length) {
        // Whole 64 KiB blocks, so that files of about the same size share one buffer.
        slot.shared = new SharedArrayBuffer(Math.min(sharedMax, Math.ceil(length / 65536) * 65536));
        request.shared = slot.shared;
      }
      // The worker reads it only while this job is its own; the next job is written after the reply.
      new Uint8Array(slot.shared, 0, length).set(job.bytes);
      slot.worker.postMessage(request);
    }
  }

  private finish(slot: Slot, reply: DecodeReply): void {
    const job = slot.job;
    if (!job || job.id !== reply.id) return;
    if (slot.timer) clearTimeout(slot.timer);
    slot.job = null;
    slot.timer = null;
    if (reply.ok) {
      // The pixels arrived transferred: this thread owns them, no copy needed.
      job.resolve(reply.wire);
    } else {
      const code: ErrorCode = isErrorCode(reply.code) ? reply.code : 'CORRUPT_IMAGE';
      job.reject(new ThoraxError(code, reply.message, { stage }));
    }
    this.pump();
  }

  /** Fails the slot's job (if any), terminates its worker and starts a fresh one. */
  private replace(slot: Slot, error: ThoraxError): void {
    const index = this.slots.indexOf(slot);
    if (index < 0) return;
    if (slot.timer) clearTimeout(slot.timer);
    const job = slot.job;
    slot.job = null;
    this.slots.splice(index, 1);
    void slot.worker.terminate();
    if (job) job.reject(error);
    if (!this.closed) {
      this.slots.push(this.spawn());
      this.pump();
    }
  }
}
