import { existsSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ModelArtifact } from './model-directory';
import type { ModelMetadata } from './onnx-metadata';
import type { WorkerReply, WorkerRequest, WorkerSetup } from './worker-protocol';

export interface PoolOptions {
  /** Worker threads, each with its own ONNX Runtime session. */
  workers: number;
  /** ONNX Runtime intra-op threads per worker. */
  intraOpThreads: number;
  /** Ordered execution providers, e.g. ['cuda', 'cpu']. */
  providers: string[];
  /**
   * Batch sizes every worker runs once (all-zero images) before it takes a batch: at start and
   * again for every replacement worker. Empty: no warm-up.
   */
  warmUpBatchSizes?: number[];
  /**
   * Longest a batch may run (ms). Past it the batch fails with BatchTimeoutError and its worker is
   * retired and replaced. 0: derived from the model's cost, AUTO_TIMEOUT_FACTOR × the slowest
   * warm-up run, at least AUTO_TIMEOUT_FLOOR_MS.
   */
  batchTimeoutMs?: number;
  /**
   * Return the class activation maps of each batch (BatchResult.maps) when the model has them
   * (`thorax.outputs.cam`). Off: only the probabilities are fetched.
   */
  maps?: boolean;
  /** Told when a worker dies unexpectedly (it is replaced automatically). */
  onWorkerExit?: (event: { worker: number; code: number }) => void;
  /** Told when a batch ran past the timeout (its worker is retired and replaced). */
  onBatchTimeout?: (event: { worker: number; images: number; timeoutMs: number }) => void;
  /** Told when a worker has loaded the model and run every warm-up batch size; it now serves. */
  onWorkerReady?: (event: { worker: number; warmUpMs: number; batchSizes: number[]; replacement: boolean }) => void;
  onProviderEvent?: (event: {
    worker: number;
    provider: string;
    outcome: 'skipped' | 'failed' | 'active';
    reason?: string;
  }) => void;
}

/** A derived batch timeout is this many times the slowest warm-up run ... */
export const AUTO_TIMEOUT_FACTOR = 20;
/** ... and never below this (ms). */
export const AUTO_TIMEOUT_FLOOR_MS = 10_000;
/** A batch waits this long (ms), or the batch timeout if longer, for a worker being replaced. */
export const WORKER_WAIT_FLOOR_MS = 30_000;
/** A warm-up run (the first of its size, possibly compiling kernels) may take at least this (ms). */
export const WARM_UP_TIMEOUT_FLOOR_MS = 120_000;

export interface BatchResult {
  /** One row of per-label probabilities per image, in the model's label order. */
  scores: Float32Array[];
  /**
   * The class activation maps of the same run, one labels*h*w array per image (label-major, the
   * shape in metadata.cam), when the pool was asked for them and the model has them; else null.
   */
  maps: Float32Array[] | null;
  /** Wall time of session.run() inside the worker, ms. */
  runMs: number;
}

/** A batch that ran past the pool's batch timeout; its worker was retired. */
export class BatchTimeoutError extends Error {
  constructor(
    readonly timeoutMs: number,
    readonly images: number,
  ) {
    super(`inference batch of ${images} image(s) did not finish within ${timeoutMs} ms; its worker was replaced`);
    this.name = 'BatchTimeoutError';
  }
}

interface Pending {
  resolve: (r: BatchResult) => void;
  reject: (e: Error) => void;
  images: Uint8Array[];
  timer: NodeJS.Timeout;
  /** Already moved once from a retired worker to another. */
  moved: boolean;
}

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface Slot {
  index: number;
  /** The thread serving this slot; null while a replacement is being started. */
  worker: Worker | null;
  /** Loaded and warmed up: takes batches. */
  alive: boolean;
  busy: number;
  pending: Map<number, Pending>;
}

/**
 * ONNX Runtime sessions in worker threads. `classify` sends a batch to the least busy live
 * worker; pixel buffers are transferred both ways, never copied through structured clone.
 *
 * Every worker runs each warm-up batch size once before it takes a batch, at start and again
 * when it replaces a dead one, so no request pays for a cold session. A worker that dies (a
 * crash in native code) fails only the batches it held. A batch that runs past the batch timeout
 * fails with BatchTimeoutError and its worker is retired at once: it takes nothing more and a
 * fresh worker replaces it while the others keep serving; batches queued behind the hung one
 * move to another worker, and while no worker serves a batch waits for one. The retired thread
 * is asked to close and exits when its native session.run() returns; it is not terminated,
 * because terminating a thread inside that call aborts the whole process when the call returns.
 * `stuck` counts retired threads still running.
 */
export class InferencePool {
  private readonly slots: Slot[] = [];
  /** Retired threads (timed out) that have not exited yet. */
  private readonly retired = new Set<Worker>();
  /** Batches waiting for a worker while every one is being replaced. */
  private readonly waiters: Waiter[] = [];
  private readonly script = workerScript();
  private nextId = 1;
  private closed = false;
  private timeoutMs = 0;
  private activeProvider = 'cpu';

  private constructor(
    private readonly artifact: ModelArtifact,
    private readonly options: PoolOptions,
  ) {}

  static async start(artifact: ModelArtifact, options: PoolOptions): Promise<InferencePool> {
    const pool = new InferencePool(artifact, options);
    try {
      for (let i = 0; i < options.workers; i += 1) {
        const slot: Slot = { index: i, worker: null, alive: false, busy: 0, pending: new Map() };
        pool.slots.push(slot);
        const { provider, slowestMs } = await pool.bringUp(slot, false);
        if (i === 0) {
          pool.activeProvider = provider;
          pool.timeoutMs =
            options.batchTimeoutMs && options.batchTimeoutMs > 0
              ? options.batchTimeoutMs
              : Math.max(AUTO_TIMEOUT_FLOOR_MS, Math.ceil(AUTO_TIMEOUT_FACTOR * slowestMs));
        }
      }
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  get metadata(): ModelMetadata {
    return this.artifact.metadata;
  }

  get sha256(): string {
    return this.artifact.sha256;
  }

  get modelPath(): string {
    return this.artifact.path;
  }

  /** The execution provider the first worker loaded. */
  get provider(): string {
    return this.activeProvider;
  }

  /** The batch timeout in force (ms): configured, or derived from the warm-up runs. */
  get batchTimeoutMs(): number {
    return this.timeoutMs;
  }

  get size(): number {
    return this.slots.length;
  }

  /** Workers currently able to take a batch. */
  get alive(): number {
    return this.slots.filter((s) => s.alive).length;
  }

  get inputSize(): { width: number; height: number } {
    return { width: this.metadata.input.width, height: this.metadata.input.height };
  }

  /**
   * Images each width*height uint8 pixels → one score row per image. While every worker is being
   * replaced, the batch waits for the first one back (WORKER_WAIT_FLOOR_MS, or the batch timeout
   * if longer).
   */
  classify(images: Uint8Array[], moved = false): Promise<BatchResult> {
    if (this.closed) return Promise.reject(new Error('inference pool is closed'));
    // Chosen and sent in the same tick, so batches dispatched together spread over the workers.
    const live = this.slots.filter((s) => s.alive);
    if (live.length > 0) {
      const slot = live.reduce((a, b) => (b.busy < a.busy ? b : a));
      return this.send(slot, images, this.timeoutMs, moved);
    }
    return this.workerBack().then(() => this.classify(images, moved));
  }

  /** Resolves when a worker serves again; rejects after the wait (see classify) or on close. */
  private workerBack(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          reject(new Error('no inference worker is running (restarting)'));
        }, Math.max(this.timeoutMs, WORKER_WAIT_FLOOR_MS)),
      };
      this.waiters.push(waiter);
    });
  }

  private wakeWaiters(): void {
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      if (this.closed) waiter.reject(new Error('inference pool is closed'));
      else waiter.resolve();
    }
  }

  /** Retired workers still inside a run that outlived the batch timeout. */
  get stuck(): number {
    return this.retired.size;
  }

  /** Batches in flight across all workers. */
  get inFlight(): number {
    return this.slots.reduce((sum, s) => sum + s.busy, 0);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wakeWaiters();
    // Retired threads were asked to close already; they get the same grace, never a terminate.
    const retired = [...this.retired].map(
      (worker) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 5_000);
          worker.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
        }),
    );
    await Promise.all([
      ...retired,
      ...this.slots.map(
        (s) =>
          new Promise<void>((resolve) => {
            const worker = s.worker;
            s.alive = false;
            if (!worker) return resolve();
            const timer = setTimeout(() => void worker.terminate().then(() => resolve()), 5_000);
            worker.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            worker.postMessage({ kind: 'close' } satisfies WorkerRequest);
          }),
      ),
    ]);
  }

  private send(slot: Slot, images: Uint8Array[], timeoutMs: number, moved = false): Promise<BatchResult> {
    const worker = slot.worker;
    if (!worker) return Promise.reject(new Error('inference worker is restarting'));
    const { width, height } = this.inputSize;
    const pixels = width * height;
    const packed = new Uint8Array(images.length * pixels);
    for (const [i, image] of images.entries()) {
      if (image.length !== pixels) {
        return Promise.reject(new Error(`image ${i} has ${image.length} bytes, expected ${pixels}`));
      }
      packed.set(image, i * pixels);
    }
    const id = this.nextId++;
    return new Promise<BatchResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!slot.pending.delete(id)) return;
        slot.busy -= 1;
        this.options.onBatchTimeout?.({ worker: slot.index, images: images.length, timeoutMs });
        reject(new BatchTimeoutError(timeoutMs, images.length));
        this.retire(slot, worker, new Error('inference worker retired after a batch timeout'));
      }, timeoutMs);
      slot.busy += 1;
      slot.pending.set(id, { resolve, reject, images, timer, moved });
      const request: WorkerRequest = { kind: 'classify', id, count: images.length, pixels: packed.buffer };
      worker.postMessage(request, [packed.buffer]);
    });
  }

  /**
   * Starts a worker for the slot, loads the model and runs every warm-up size on it; only then
   * does the slot take batches. Throws (with the worker stopped) when any step fails.
   */
  private async bringUp(slot: Slot, replacement: boolean): Promise<{ provider: string; slowestMs: number }> {
    const { bytes, ...rest } = this.artifact;
    const copy = new Uint8Array(bytes).buffer;
    const setup: WorkerSetup = {
      artifact: rest,
      bytes: copy,
      providers: this.options.providers,
      intraOpThreads: this.options.intraOpThreads,
      maps: Boolean(this.options.maps) && this.artifact.metadata.cam !== null,
    };
    const worker = new Worker(this.script, { workerData: setup, transferList: [copy] });
    let provider: string;
    try {
      provider = await waitReady(worker, (e) => this.options.onProviderEvent?.({ worker: slot.index, ...e }));
    } catch (error) {
      await worker.terminate();
      throw error;
    }
    slot.worker = worker;
    this.attach(slot, worker);
    const started = Date.now();
    const sizes = [...new Set(this.options.warmUpBatchSizes ?? [])].sort((a, b) => a - b);
    const { width, height } = this.inputSize;
    const warmUpTimeoutMs = Math.max(this.timeoutMs, WARM_UP_TIMEOUT_FLOOR_MS);
    let slowestMs = 0;
    try {
      for (const size of sizes) {
        if (this.closed) throw new Error('inference pool is closed');
        const images = Array.from({ length: size }, () => new Uint8Array(width * height));
        const result = await this.send(slot, images, warmUpTimeoutMs);
        slowestMs = Math.max(slowestMs, result.runMs);
      }
    } catch (error) {
      this.retire(slot, worker, error as Error);
      throw error;
    }
    if (slot.worker !== worker) throw new Error('inference worker exited during its warm-up');
    if (this.closed) {
      this.retire(slot, worker, new Error('inference pool is closed'));
      throw new Error('inference pool is closed');
    }
    slot.alive = true;
    this.wakeWaiters();
    this.options.onWorkerReady?.({ worker: slot.index, warmUpMs: Date.now() - started, batchSizes: sizes, replacement });
    return { provider, slowestMs };
  }

  private attach(slot: Slot, worker: Worker): void {
    worker.on('message', (reply: WorkerReply) => {
      if (reply.kind !== 'result' && reply.kind !== 'error') return;
      if (slot.worker !== worker) return;
      const pending = slot.pending.get(reply.id);
      if (!pending) return;
      slot.pending.delete(reply.id);
      clearTimeout(pending.timer);
      slot.busy -= 1;
      if (reply.kind === 'error') return pending.reject(new Error(reply.message));
      const all = new Float32Array(reply.scores);
      const count = pending.images.length;
      const labels = all.length / count;
      const scores = Array.from({ length: count }, (_, i) => all.subarray(i * labels, (i + 1) * labels));
      const packed = reply.maps ? new Float32Array(reply.maps) : null;
      const perImage = packed ? packed.length / count : 0;
      const maps = packed ? Array.from({ length: count }, (_, i) => packed.subarray(i * perImage, (i + 1) * perImage)) : null;
      pending.resolve({ scores, maps, runMs: reply.runMs });
    });
    worker.on('error', (error) => {
      if (slot.worker === worker) this.failPending(slot, error);
    });
    worker.on('exit', (code) => {
      // A retired worker's exit is expected; its slot already has (or is starting) a new one.
      if (slot.worker !== worker) return;
      const serving = slot.alive;
      slot.alive = false;
      slot.worker = null;
      this.failPending(slot, new Error(`inference worker exited with code ${code}`));
      // A worker that dies during its warm-up fails its bring-up, which decides what happens next.
      if (this.closed || !serving) return;
      this.options.onWorkerExit?.({ worker: slot.index, code });
      void this.replace(slot);
    });
  }

  private failPending(slot: Slot, error: Error): void {
    for (const [, p] of slot.pending) {
      clearTimeout(p.timer);
      p.reject(error);
    }
    slot.pending.clear();
    slot.busy = 0;
  }

  /**
   * Takes a worker out of service now (the batches queued on it move to another worker),
   * asks it to close (it exits once its current native run returns; it no longer holds the
   * process open) and starts a replacement if it was serving.
   */
  private retire(slot: Slot, worker: Worker, reason: Error): void {
    if (slot.worker !== worker) return;
    const serving = slot.alive;
    slot.alive = false;
    slot.worker = null;
    // Batches queued behind the one that hung did nothing wrong: they move to another worker
    // (once), instead of failing with it.
    for (const [id, p] of slot.pending) {
      if (!serving || p.moved || this.closed) continue;
      slot.pending.delete(id);
      clearTimeout(p.timer);
      this.classify(p.images, true).then(p.resolve, p.reject);
    }
    this.failPending(slot, reason);
    this.retired.add(worker);
    worker.once('exit', () => this.retired.delete(worker));
    worker.unref();
    worker.postMessage({ kind: 'close' } satisfies WorkerRequest);
    if (serving && !this.closed) void this.replace(slot);
  }

  /** Starts a fresh, warmed-up worker for a slot, retrying until it works or the pool closes. */
  private async replace(slot: Slot): Promise<void> {
    for (let attempt = 1; !this.closed; attempt += 1) {
      try {
        await this.bringUp(slot, true);
        return;
      } catch {
        if (this.closed) return;
        await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * attempt)));
      }
    }
  }
}

function waitReady(
  worker: Worker,
  onProvider: (e: { provider: string; outcome: 'skipped' | 'failed' | 'active'; reason?: string }) => void,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const onMessage = (reply: WorkerReply) => {
      if (reply.kind === 'provider') {
        onProvider(reply.reason === undefined ? { provider: reply.provider, outcome: reply.outcome } : reply);
      } else if (reply.kind === 'ready') {
        cleanup();
        resolve(reply.provider);
      } else if (reply.kind === 'failed') {
        cleanup();
        reject(new Error(reply.message));
      }
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onExit = (code: number) => {
      cleanup();
      reject(new Error(`inference worker exited with code ${code} before it was ready`));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

/**
 * The compiled worker script. From dist/ it sits beside this file; when this module runs from
 * TypeScript sources (tests), the build output is used (npm test builds before it tests).
 */
function workerScript(): string {
  const beside = path.join(__dirname, 'classifier.worker.js');
  if (existsSync(beside)) return beside;
  const built = path.resolve(__dirname, '../../../dist/libs/model-runtime/src/classifier.worker.js');
  if (existsSync(built)) return built;
  throw new Error(`inference worker script not found (${beside}); run the build first`);
}
