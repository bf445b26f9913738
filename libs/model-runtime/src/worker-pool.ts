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
  /** Told when a worker dies unexpectedly (it is replaced automatically). */
  onWorkerExit?: (event: { worker: number; code: number }) => void;
  onProviderEvent?: (event: {
    worker: number;
    provider: string;
    outcome: 'skipped' | 'failed' | 'active';
    reason?: string;
  }) => void;
}

export interface BatchResult {
  /** One row of per-label probabilities per image, in the model's label order. */
  scores: Float32Array[];
  /** Wall time of session.run() inside the worker, ms. */
  runMs: number;
}

interface Slot {
  index: number;
  worker: Worker;
  alive: boolean;
  busy: number;
  pending: Map<number, { resolve: (r: BatchResult) => void; reject: (e: Error) => void; count: number }>;
}

/**
 * ONNX Runtime sessions in worker threads. `classify` sends a batch to the least busy live
 * worker; pixel buffers are transferred both ways, never copied through structured clone. A
 * worker that dies (a crash in native code) fails only the batches it held, and is replaced by
 * a fresh one with the same model while the others keep serving.
 */
export class InferencePool {
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly slots: Slot[],
    private readonly spawn: (index: number) => Promise<{ worker: Worker; provider: string }>,
    private readonly options: PoolOptions,
    readonly metadata: ModelMetadata,
    readonly sha256: string,
    readonly provider: string,
    readonly modelPath: string,
  ) {
    for (const slot of slots) this.attach(slot);
  }

  static async start(artifact: ModelArtifact, options: PoolOptions): Promise<InferencePool> {
    const script = workerScript();
    const { bytes, ...rest } = artifact;
    const spawn = async (index: number) => {
      const copy = new Uint8Array(bytes).buffer;
      const setup: WorkerSetup = {
        artifact: rest,
        bytes: copy,
        providers: options.providers,
        intraOpThreads: options.intraOpThreads,
      };
      const worker = new Worker(script, { workerData: setup, transferList: [copy] });
      try {
        const provider = await waitReady(worker, (e) => options.onProviderEvent?.({ worker: index, ...e }));
        return { worker, provider };
      } catch (error) {
        await worker.terminate();
        throw error;
      }
    };
    const slots: Slot[] = [];
    const providers: string[] = [];
    try {
      for (let i = 0; i < options.workers; i += 1) {
        const { worker, provider } = await spawn(i);
        slots.push({ index: i, worker, alive: true, busy: 0, pending: new Map() });
        providers.push(provider);
      }
    } catch (error) {
      await Promise.all(slots.map((s) => s.worker.terminate()));
      throw error;
    }
    return new InferencePool(
      slots,
      spawn,
      options,
      artifact.metadata,
      artifact.sha256,
      providers[0] ?? 'cpu',
      artifact.path,
    );
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

  /** Images each width*height uint8 pixels → one score row per image. */
  classify(images: Uint8Array[]): Promise<BatchResult> {
    if (this.closed) return Promise.reject(new Error('inference pool is closed'));
    const live = this.slots.filter((s) => s.alive);
    if (live.length === 0) return Promise.reject(new Error('no inference worker is running (restarting)'));
    const { width, height } = this.inputSize;
    const pixels = width * height;
    const packed = new Uint8Array(images.length * pixels);
    for (const [i, image] of images.entries()) {
      if (image.length !== pixels) {
        return Promise.reject(new Error(`image ${i} has ${image.length} bytes, expected ${pixels}`));
      }
      packed.set(image, i * pixels);
    }
    const slot = live.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    return new Promise<BatchResult>((resolve, reject) => {
      slot.busy += 1;
      slot.pending.set(id, { resolve, reject, count: images.length });
      const request: WorkerRequest = { kind: 'classify', id, count: images.length, pixels: packed.buffer };
      slot.worker.postMessage(request, [packed.buffer]);
    });
  }

  /** Batches in flight across all workers. */
  get inFlight(): number {
    return this.slots.reduce((sum, s) => sum + s.busy, 0);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      this.slots.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.alive) return resolve();
            const timer = setTimeout(() => void s.worker.terminate().then(() => resolve()), 5_000);
            s.worker.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            s.worker.postMessage({ kind: 'close' } satisfies WorkerRequest);
          }),
      ),
    );
  }

  private attach(slot: Slot): void {
    const worker = slot.worker;
    const failAll = (error: Error) => {
      for (const [, p] of slot.pending) p.reject(error);
      slot.pending.clear();
      slot.busy = 0;
    };
    worker.on('message', (reply: WorkerReply) => {
      if (reply.kind !== 'result' && reply.kind !== 'error') return;
      const pending = slot.pending.get(reply.id);
      if (!pending) return;
      slot.pending.delete(reply.id);
      slot.busy -= 1;
      if (reply.kind === 'error') return pending.reject(new Error(reply.message));
      const all = new Float32Array(reply.scores);
      const labels = all.length / pending.count;
      const scores = Array.from({ length: pending.count }, (_, i) => all.subarray(i * labels, (i + 1) * labels));
      pending.resolve({ scores, runMs: reply.runMs });
    });
    worker.on('error', (error) => failAll(error));
    worker.on('exit', (code) => {
      slot.alive = false;
      failAll(new Error(`inference worker exited with code ${code}`));
      if (this.closed) return;
      this.options.onWorkerExit?.({ worker: slot.index, code });
      void this.replace(slot);
    });
  }

  /** Starts a fresh worker for a dead slot, retrying until it works or the pool closes. */
  private async replace(slot: Slot): Promise<void> {
    for (let attempt = 1; !this.closed; attempt += 1) {
      try {
        const { worker } = await this.spawn(slot.index);
        if (this.closed) {
          await worker.terminate();
          return;
        }
        slot.worker = worker;
        slot.alive = true;
        this.attach(slot);
        return;
      } catch {
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
