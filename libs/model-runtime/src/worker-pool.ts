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
  worker: Worker;
  busy: number;
  pending: Map<number, { resolve: (r: BatchResult) => void; reject: (e: Error) => void; count: number }>;
}

/**
 * ONNX Runtime sessions in worker threads. `classify` sends a batch to the least busy worker;
 * pixel buffers are transferred both ways, never copied through structured clone.
 */
export class InferencePool {
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly slots: Slot[],
    readonly metadata: ModelMetadata,
    readonly sha256: string,
    readonly provider: string,
    readonly modelPath: string,
  ) {}

  static async start(artifact: ModelArtifact, options: PoolOptions): Promise<InferencePool> {
    const script = workerScript();
    const { bytes, ...rest } = artifact;
    const slots: Slot[] = [];
    const providers: string[] = [];
    try {
      for (let i = 0; i < options.workers; i += 1) {
        const copy = new Uint8Array(bytes).buffer;
        const setup: WorkerSetup = {
          artifact: rest,
          bytes: copy,
          providers: options.providers,
          intraOpThreads: options.intraOpThreads,
        };
        const worker = new Worker(script, { workerData: setup, transferList: [copy] });
        const slot: Slot = { worker, busy: 0, pending: new Map() };
        slots.push(slot);
        providers.push(await waitReady(worker, (e) => options.onProviderEvent?.({ worker: i, ...e })));
        attach(slot);
      }
    } catch (error) {
      await Promise.all(slots.map((s) => s.worker.terminate()));
      throw error;
    }
    return new InferencePool(slots, artifact.metadata, artifact.sha256, providers[0] ?? 'cpu', artifact.path);
  }

  get size(): number {
    return this.slots.length;
  }

  get inputSize(): { width: number; height: number } {
    return { width: this.metadata.input.width, height: this.metadata.input.height };
  }

  /** Images each width*height uint8 pixels → one score row per image. */
  classify(images: Uint8Array[]): Promise<BatchResult> {
    if (this.closed) return Promise.reject(new Error('inference pool is closed'));
    const { width, height } = this.inputSize;
    const pixels = width * height;
    const packed = new Uint8Array(images.length * pixels);
    images.forEach((image, i) => {
      if (image.length !== pixels) throw new Error(`image ${i} has ${image.length} bytes, expected ${pixels}`);
      packed.set(image, i * pixels);
    });
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
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
}

function attach(slot: Slot): void {
  const failAll = (error: Error) => {
    for (const [, p] of slot.pending) p.reject(error);
    slot.pending.clear();
    slot.busy = 0;
  };
  slot.worker.on('message', (reply: WorkerReply) => {
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
  slot.worker.on('error', (error) => failAll(error));
  slot.worker.on('exit', (code) => failAll(new Error(`inference worker exited with code ${code}`)));
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
