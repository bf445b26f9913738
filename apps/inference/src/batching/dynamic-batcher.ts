export interface BatcherOptions<TIn, TOut> {
  /** Largest batch handed to `run`. */
  maxBatch: number;
  /** Longest an item waits for companions before a partial batch is dispatched. */
  maxDelayMs: number;
  /** Batches running at once (one per inference worker). */
  concurrency: number;
  /** Depth (queued + running items) at which `onPressure(true)` fires. */
  highWatermark: number;
  /** Depth at which `onPressure(false)` fires after a high one. */
  lowWatermark: number;
  run: (items: TIn[]) => Promise<TOut[]>;
  /**
   * When a batch of several items fails with an error this accepts (a batch timeout: one item
   * may hang the whole batch), each item is run again alone, so that only the items that fail
   * on their own are rejected and their batch mates are answered.
   */
  isolateOn?: (error: Error) => boolean;
  onPressure?: (high: boolean) => void;
  onDepth?: (depth: number) => void;
  onBatch?: (size: number) => void;
}

interface Entry<TIn, TOut> {
  item: TIn;
  enqueuedAt: number;
  resolve: (value: TOut) => void;
  reject: (error: Error) => void;
}

/**
 * A dynamic batcher: items from any partition queue here; a batch is dispatched as soon as
 * `maxBatch` items wait, or when the oldest has waited `maxDelayMs`, with at most `concurrency`
 * batches running. Urgent (STAT) items go ahead of routine ones. A batch that times out is
 * retried item by item (`isolateOn`), so one hanging image fails alone. Nothing is ever dropped:
 * when the depth crosses the high watermark the caller is told to stop feeding (pause the Kafka
 * partitions) and told again when it falls to the low watermark.
 */
export class DynamicBatcher<TIn, TOut> {
  private readonly urgent: Entry<TIn, TOut>[] = [];
  private readonly routine: Entry<TIn, TOut>[] = [];
  private running = 0;
  private runningItems = 0;
  private timer: NodeJS.Timeout | null = null;
  private pressured = false;

  constructor(private readonly options: BatcherOptions<TIn, TOut>) {
    if (options.lowWatermark > options.highWatermark) throw new Error('lowWatermark must not exceed highWatermark');
  }

  get depth(): number {
    return this.urgent.length + this.routine.length + this.runningItems;
  }

  submit(item: TIn, urgent = false): Promise<TOut> {
    return new Promise<TOut>((resolve, reject) => {
      (urgent ? this.urgent : this.routine).push({ item, enqueuedAt: Date.now(), resolve, reject });
      this.depthChanged();
      this.pump();
    });
  }

  private get queued(): number {
    return this.urgent.length + this.routine.length;
  }

  private pump(): void {
    while (this.running < this.options.concurrency && this.queued > 0) {
      const oldest = Math.min(this.urgent[0]?.enqueuedAt ?? Infinity, this.routine[0]?.enqueuedAt ?? Infinity);
      const waited = Date.now() - oldest;
      if (this.queued < this.options.maxBatch && waited < this.options.maxDelayMs) {
        this.arm(this.options.maxDelayMs - waited);
        return;
      }
      this.dispatch(this.take(this.options.maxBatch));
    }
  }

  private arm(delayMs: number): void {
    if (this.timer) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.pump();
      },
      Math.max(0, delayMs),
    );
  }

  private take(n: number): Entry<TIn, TOut>[] {
    const batch = this.urgent.splice(0, n);
    if (batch.length < n) batch.push(...this.routine.splice(0, n - batch.length));
    return batch;
  }

  private dispatch(batch: Entry<TIn, TOut>[]): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.running += 1;
    this.runningItems += batch.length;
    this.options.onBatch?.(batch.length);
    const settle = () => {
      this.running -= 1;
      this.runningItems -= batch.length;
      this.depthChanged();
      this.pump();
    };
    let pending: Promise<TOut[]>;
    try {
      pending = this.options.run(batch.map((e) => e.item));
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.then(
      (results) => {
        if (results.length !== batch.length) {
          const error = new Error(`batch of ${batch.length} produced ${results.length} results`);
          batch.forEach((e) => e.reject(error));
        } else {
          batch.forEach((e, i) => e.resolve(results[i] as TOut));
        }
        settle();
      },
      (error: unknown) => {
        const err = error instanceof Error ? error : new Error(String(error));
        if (batch.length > 1 && this.options.isolateOn?.(err)) {
          // The batch keeps its running slot until every item has been answered on its own.
          void Promise.all(batch.map((e) => this.runAlone(e))).then(settle);
          return;
        }
        batch.forEach((e) => e.reject(err));
        settle();
      },
    );
  }

  private async runAlone(entry: Entry<TIn, TOut>): Promise<void> {
    try {
      const [result] = await this.options.run([entry.item]);
      if (result === undefined) throw new Error('batch of 1 produced 0 results');
      entry.resolve(result);
    } catch (error) {
      entry.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private depthChanged(): void {
    const depth = this.depth;
    this.options.onDepth?.(depth);
    if (!this.pressured && depth >= this.options.highWatermark) {
      this.pressured = true;
      this.options.onPressure?.(true);
    } else if (this.pressured && depth <= this.options.lowWatermark) {
      this.pressured = false;
      this.options.onPressure?.(false);
    }
  }
}
