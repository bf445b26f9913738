import path from 'node:path';
import { type BatchResult, BatchTimeoutError, type InferencePool } from '@thorax/model-runtime';
import { DynamicBatcher } from '../batching/dynamic-batcher';

export interface SlotOptions {
  maxBatch: number;
  maxDelayMs: number;
  highWatermark: number;
  lowWatermark: number;
  onPressure: () => void;
  onBatch: (size: number, result: BatchResult) => void;
  onDepth: (depth: number) => void;
}

/**
 * Every batch size the batcher can form that a worker warms up with: powers of two below
 * `maxBatch`, and `maxBatch` itself.
 */
export function warmUpBatchSizes(maxBatch: number): number[] {
  const sizes = new Set<number>([maxBatch]);
  for (let n = 1; n < maxBatch; n *= 2) sizes.add(n);
  return [...sizes].sort((a, b) => a - b);
}

/** What the model gave for one image: per-label probabilities and, when asked for, its maps. */
export interface SlotResult {
  probabilities: Float32Array;
  /** Class activation maps (labels*h*w, label-major; shape in pool.metadata.cam) or null. */
  map: Float32Array | null;
}

/** One served model version: its worker pool (warmed up) and its own dynamic batcher. */
export class ModelSlot {
  readonly batcher: DynamicBatcher<Uint8Array, SlotResult>;
  pressured = false;

  constructor(
    readonly role: 'primary' | 'canary' | 'shadow',
    readonly pool: InferencePool,
    options: SlotOptions,
  ) {
    this.batcher = new DynamicBatcher<Uint8Array, SlotResult>({
      maxBatch: options.maxBatch,
      maxDelayMs: options.maxDelayMs,
      concurrency: pool.size,
      highWatermark: options.highWatermark,
      lowWatermark: options.lowWatermark,
      run: async (images) => {
        const result = await pool.classify(images);
        options.onBatch(images.length, result);
        return result.scores.map((probabilities, i) => ({ probabilities, map: result.maps?.[i] ?? null }));
      },
      // One image that hangs its batch must not fail the images batched with it.
      isolateOn: (error) => error instanceof BatchTimeoutError,
      onPressure: (high) => {
        this.pressured = high;
        options.onPressure();
      },
      onDepth: options.onDepth,
    });
  }

  get version(): string {
    return this.pool.metadata.version;
  }

  /** The version directory it was loaded from (what MODEL_DIR polling compares). */
  get directory(): string {
    return path.basename(path.dirname(this.pool.modelPath));
  }

  get name(): string {
    return this.pool.metadata.name;
  }

  async classify(pixels: Uint8Array, urgent: boolean): Promise<Float32Array> {
    return (await this.batcher.submit(pixels, urgent)).probabilities;
  }

  /** The probabilities and, when the pool returns them, the class activation maps of one image. */
  classifyWithMap(pixels: Uint8Array, urgent: boolean): Promise<SlotResult> {
    return this.batcher.submit(pixels, urgent);
  }

  /** Waits until nothing is queued or running here, then stops the workers. */
  async drainAndClose(): Promise<void> {
    while (this.batcher.depth > 0) await new Promise((r) => setTimeout(r, 20));
    await this.pool.close();
  }
}
