import { DynamicBatcher } from './dynamic-batcher';

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('DynamicBatcher', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('dispatches a full batch at once and a partial one after maxDelayMs', async () => {
    const batches: number[][] = [];
    const batcher = new DynamicBatcher<number, number>({
      maxBatch: 4,
      maxDelayMs: 10,
      concurrency: 1,
      highWatermark: 100,
      lowWatermark: 50,
      run: async (items) => {
        batches.push(items);
        return items.map((x) => x * 2);
      },
    });
    const full = [1, 2, 3, 4].map((x) => batcher.submit(x));
    expect(batches).toEqual([[1, 2, 3, 4]]);
    await expect(Promise.all(full)).resolves.toEqual([2, 4, 6, 8]);

    const partial = batcher.submit(5);
    await jest.advanceTimersByTimeAsync(9);
    expect(batches).toHaveLength(1);
    await jest.advanceTimersByTimeAsync(1);
    expect(batches).toEqual([[1, 2, 3, 4], [5]]);
    await expect(partial).resolves.toBe(10);
  });

  it('dispatches at once when maxDelayMs is 0', async () => {
    const batches: number[][] = [];
    const batcher = new DynamicBatcher<number, number>({
      maxBatch: 8,
      maxDelayMs: 0,
      concurrency: 4,
      highWatermark: 100,
      lowWatermark: 50,
      run: async (items) => {
        batches.push(items);
        return items;
      },
    });
    await batcher.submit(1);
    expect(batches).toEqual([[1]]);
  });

  it('runs at most `concurrency` batches and serves urgent items first', async () => {
    const gates: { resolve: (v: number[]) => void }[] = [];
    const batches: string[][] = [];
    const batcher = new DynamicBatcher<string, number>({
      maxBatch: 2,
      maxDelayMs: 5,
      concurrency: 1,
      highWatermark: 100,
      lowWatermark: 50,
      run: (items) => {
        batches.push(items);
        const d = deferred<number[]>();
        gates.push(d);
        return d.promise;
      },
    });
    void batcher.submit('r1');
    void batcher.submit('r2');
    void batcher.submit('r3');
    void batcher.submit('stat', true);
    expect(batches).toEqual([['r1', 'r2']]);
    gates[0]?.resolve([1, 2]);
    await jest.advanceTimersByTimeAsync(0);
    expect(batches[1]).toEqual(['stat', 'r3']);
  });

  it('signals backpressure at the high watermark and release at the low one, dropping nothing', async () => {
    const signals: boolean[] = [];
    const gate = deferred<void>();
    const batcher = new DynamicBatcher<number, number>({
      maxBatch: 2,
      maxDelayMs: 0,
      concurrency: 1,
      highWatermark: 5,
      lowWatermark: 2,
      run: async (items) => {
        await gate.promise;
        return items;
      },
      onPressure: (high) => signals.push(high),
    });
    const results = Array.from({ length: 6 }, (_, i) => batcher.submit(i));
    expect(signals).toEqual([true]);
    gate.resolve();
    await expect(Promise.all(results)).resolves.toEqual([0, 1, 2, 3, 4, 5]);
    expect(signals).toEqual([true, false]);
    expect(batcher.depth).toBe(0);
  });

  it('fails every item of a failed batch, and carries on', async () => {
    let calls = 0;
    const batcher = new DynamicBatcher<number, number>({
      maxBatch: 2,
      maxDelayMs: 5,
      concurrency: 1,
      highWatermark: 10,
      lowWatermark: 5,
      run: async (items) => {
        calls += 1;
        if (calls === 1) throw new Error('session failed');
        return items;
      },
    });
    const failed = [batcher.submit(1), batcher.submit(2)];
    await expect(failed[0]).rejects.toThrow('session failed');
    await expect(failed[1]).rejects.toThrow('session failed');
    await expect(Promise.all([batcher.submit(3), batcher.submit(4)])).resolves.toEqual([3, 4]);
  });

  it('runs the items of a timed-out batch alone, so only the one that hangs fails', async () => {
    jest.useRealTimers();
    const batches: number[][] = [];
    let running = 0;
    const timeout = new Error('batch timed out');
    const batcher = new DynamicBatcher<number, number>({
      maxBatch: 4,
      maxDelayMs: 1000,
      concurrency: 1,
      highWatermark: 100,
      lowWatermark: 50,
      run: async (items) => {
        batches.push(items);
        running += 1;
        await new Promise((r) => setTimeout(r, 1));
        running -= 1;
        if (items.includes(13)) throw timeout;
        return items.map((x) => x * 2);
      },
      isolateOn: (error) => error === timeout,
    });
    const results = await Promise.allSettled([1, 13, 3, 4].map((x) => batcher.submit(x)));
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([
      2,
      'batch timed out',
      6,
      8,
    ]);
    expect(batches).toEqual([[1, 13, 3, 4], [1], [13], [3], [4]]);
    expect(running).toBe(0);
    // The batch frees its slot once its last item has been answered.
    await new Promise((r) => setImmediate(r));
    expect(batcher.depth).toBe(0);

    // Any other failure fails the whole batch, as before.
    const other = new DynamicBatcher<number, number>({
      maxBatch: 2,
      maxDelayMs: 0,
      concurrency: 1,
      highWatermark: 100,
      lowWatermark: 50,
      run: async () => Promise.reject(new Error('session lost')),
      isolateOn: (error) => error === timeout,
    });
    const failed = await Promise.allSettled([other.submit(1), other.submit(2)]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });
});
