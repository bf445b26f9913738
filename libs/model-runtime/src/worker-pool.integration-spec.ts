/** InferencePool with real worker threads and the committed model (needs the build: npm test). */
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { Classifier } from './classifier';
import { loadModelArtifact } from './model-directory';
import { InferencePool } from './worker-pool';

jest.setTimeout(60_000);

const MODEL_DIR = path.resolve(__dirname, '../../../models/thorax-tiny-cnn');
const image = (seed: number) => new Uint8Array(256 * 256).map((_, i) => (i * seed) % 256);

describe('InferencePool', () => {
  let pool: InferencePool;
  const exits: number[] = [];

  beforeAll(async () => {
    pool = await InferencePool.start(await loadModelArtifact(MODEL_DIR), {
      workers: 2,
      intraOpThreads: 1,
      providers: ['cpu'],
      onWorkerExit: (e) => exits.push(e.worker),
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

  it('survives a dead worker: its batches fail, the other serves, and a replacement starts', async () => {
    const slots = (pool as unknown as { slots: { worker: Worker }[] }).slots;
    await slots[0]?.worker.terminate();
    expect(exits).toEqual([0]);
    // Meanwhile the live worker keeps serving.
    await expect(pool.classify([image(3)])).resolves.toMatchObject({ scores: [expect.any(Float32Array)] });
    const deadline = Date.now() + 30_000;
    while (pool.alive < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(pool.alive).toBe(2);
    const results = await Promise.all([pool.classify([image(5)]), pool.classify([image(7)])]);
    expect(results.map((r) => r.scores.length)).toEqual([1, 1]);
  });
});
