/**
 * InferencePool with real worker threads, the committed model and a slow test model
 * (fixtures/make_slow_model.py) whose run time grows with its first pixel (needs the build: npm test).
 */
import { SLOW_MODEL_DIR, slowImage as slow, slowModelLevel } from '@thorax/testing';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { Classifier } from './classifier';
import { loadModelArtifact } from './model-directory';
import { BatchTimeoutError, InferencePool, type PoolOptions } from './worker-pool';

jest.setTimeout(60_000);

const MODEL_DIR = path.resolve(__dirname, '../../../models/thorax-tiny-cnn');
const image = (seed: number) => new Uint8Array(256 * 256).map((_, i) => (i * seed) % 256);

describe('InferencePool', () => {
  let pool: InferencePool;
  const exits: number[] = [];
  const ready: Parameters<NonNullable<PoolOptions['onWorkerReady']>>[0][] = [];

  beforeAll(async () => {
    pool = await InferencePool.start(await loadModelArtifact(MODEL_DIR), {
      workers: 2,
      intraOpThreads: 1,
      providers: ['cpu'],
      warmUpBatchSizes: [4, 1, 2],
      onWorkerExit: (e) => exits.push(e.worker),
      onWorkerReady: (e) => ready.push(e),
    });
  });

  afterAll(() => pool.close());

  it('gives the same scores as an in-process session, for concurrent batches', async () => {
    const inline = await Classifier.create(await loadModelArtifact(MODEL_DIR), {
      providers: ['cpu'],
      intraOpThreads: 1,
    });
    try {
      const batches = [[image(3), image(5)], [image(7)], [image(11), image(13), image(17)]];
      const pooled = await Promise.all(batches.map((b) => pool.classify(b)));
      for (const [i, batch] of batches.entries()) {
        const expected = await inline.classify(batch);
        expect(pooled[i]?.scores).toHaveLength(batch.length);
        pooled[i]?.scores.forEach((row, r) => row.forEach((p, l) => expect(p).toBeCloseTo(expected[r]?.[l] ?? -1, 5)));
      }
    } finally {
      await inline.release();
    }
  });

  it('warms every worker up at every batch size before it serves', () => {
    expect(ready.map((e) => [e.worker, e.batchSizes, e.replacement])).toEqual([
      [0, [1, 2, 4], false],
      [1, [1, 2, 4], false],
    ]);
    // Derived from the warm-up runs of this ~1 ms model: the floor.
    expect(pool.batchTimeoutMs).toBe(10_000);
  });

  it('survives a dead worker: its batches fail, the other serves, and a warmed-up replacement starts', async () => {
    const slots = (pool as unknown as { slots: { worker: Worker }[] }).slots;
    await slots[0]?.worker.terminate();
    expect(exits).toEqual([0]);
    expect(pool.alive).toBe(1);
    // Meanwhile the live worker keeps serving.
    await expect(pool.classify([image(3)])).resolves.toMatchObject({ scores: [expect.any(Float32Array)] });
    const deadline = Date.now() + 30_000;
    while (pool.alive < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(pool.alive).toBe(2);
    // It took batches only after running every warm-up size.
    expect(ready.slice(2).map((e) => [e.worker, e.batchSizes, e.replacement])).toEqual([[0, [1, 2, 4], true]]);
    const results = await Promise.all([pool.classify([image(5)]), pool.classify([image(7)])]);
    expect(results.map((r) => r.scores.length)).toEqual([1, 1]);
  });
});

describe('InferencePool batch timeout', () => {
  // Brightest first pixel v in a batch: the slow model loops v × 20,000 times; all-zero: at once.
  let pool: InferencePool;
  // A level that runs about 3.5 s on this machine now: far past the 1 s timeout, which leaves
  // quick batches room on a loaded machine (a fixed level ran 3.6 s on one machine of the CI
  // kind and 0.9 s on another).
  let hangLevel = 0;
  const timeouts: { worker: number; images: number; timeoutMs: number }[] = [];
  const ready: { worker: number; replacement: boolean }[] = [];

  beforeAll(async () => {
    const inline = await Classifier.create(await loadModelArtifact(SLOW_MODEL_DIR), {
      providers: ['cpu'],
      intraOpThreads: 1,
    });
    try {
      hangLevel = await slowModelLevel((batch) => inline.classify(batch), 3_500);
    } finally {
      await inline.release();
    }
    pool = await InferencePool.start(await loadModelArtifact(SLOW_MODEL_DIR), {
      workers: 2,
      intraOpThreads: 1,
      providers: ['cpu'],
      warmUpBatchSizes: [1, 2],
      batchTimeoutMs: 1_000,
      onBatchTimeout: (e) => timeouts.push(e),
      onWorkerReady: (e) => ready.push({ worker: e.worker, replacement: e.replacement }),
    });
  });

  afterAll(() => pool.close());

  it('fails a batch that runs past the timeout, retires its worker and serves on with a warmed-up replacement', async () => {
    expect(pool.batchTimeoutMs).toBe(1_000);
    const started = Date.now();
    const hung = pool.classify([slow(hangLevel), slow(0)]);
    const error = await hung.catch((e: unknown) => e);
    const waited = Date.now() - started;
    expect(error).toBeInstanceOf(BatchTimeoutError);
    expect(error).toMatchObject({ timeoutMs: 1_000, images: 2 });
    // Rejected by the timer, not by the run's end (a finished run would have resolved).
    expect(waited).toBeGreaterThanOrEqual(990);
    expect(timeouts).toEqual([{ worker: expect.any(Number), images: 2, timeoutMs: 1_000 }]);
    // The retired worker takes nothing more; the other one answers at once.
    expect(pool.alive).toBe(1);
    expect(pool.stuck).toBe(1);
    const quick = await pool.classify([slow(0)]);
    expect(quick.scores).toHaveLength(1);
    const deadline = Date.now() + 30_000;
    while (pool.alive < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(pool.alive).toBe(2);
    expect(ready.filter((r) => r.replacement)).toEqual([{ worker: timeouts[0]?.worker, replacement: true }]);
    const both = await Promise.all([pool.classify([slow(0)]), pool.classify([slow(0)])]);
    expect(both.map((r) => r.scores.length)).toEqual([1, 1]);
    // The retired thread closes itself once its run returns (never terminated mid-run).
    while (pool.stuck > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(pool.stuck).toBe(0);
  });

  it('moves a batch queued behind a hung one to another worker instead of failing it', async () => {
    const before = timeouts.length;
    // Sent in one tick: the hung batch and the first quick one go to different workers, the
    // second quick one queues behind the hung batch (fewest batches, first in order).
    const hung = pool.classify([slow(hangLevel)]);
    const first = pool.classify([slow(0)]);
    const behind = pool.classify([slow(0)]);
    await expect(hung).rejects.toBeInstanceOf(BatchTimeoutError);
    await expect(first).resolves.toMatchObject({ scores: [expect.any(Float32Array)] });
    await expect(behind).resolves.toMatchObject({ scores: [expect.any(Float32Array)] });
    expect(timeouts.length - before).toBe(1);
    const deadline = Date.now() + 30_000;
    while ((pool.alive < 2 || pool.stuck > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect([pool.alive, pool.stuck]).toEqual([2, 0]);
  });

  it('derives the timeout from the model cost when none is configured', async () => {
    const derived = await InferencePool.start(await loadModelArtifact(SLOW_MODEL_DIR), {
      workers: 1,
      intraOpThreads: 1,
      providers: ['cpu'],
      warmUpBatchSizes: [1],
    });
    try {
      expect(derived.batchTimeoutMs).toBe(10_000);
    } finally {
      await derived.close();
    }
  });
});
