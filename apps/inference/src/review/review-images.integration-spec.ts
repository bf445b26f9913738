/**
 * Review images through the real ONNX Runtime session and a real (file) object store: the
 * heatmap of a synthetic image with a planted sign peaks where the sign was planted.
 *
 * Fixtures (apps/trainer's synthetic generator, `planted_example(label, seed)`): `mass.png` (Mass
 * alone, seed 0) and `consolidation.png` (Consolidation alone, seed 1), 256² grey wire images,
 * with `<name>.region.png`, the pixels the generator's sign changed (255 inside).
 */
import { loadConfig } from '@thorax/config';
import { decodePngRaw } from '@thorax/imaging';
import { InferencePool, loadModelArtifact } from '@thorax/model-runtime';
import { createLogger, ThoraxMetrics } from '@thorax/observability';
import { createObjectStore, type ObjectStore } from '@thorax/object-store';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inferenceConfigSchema } from '../config';
import { ReviewImagesService } from './review-images.service';

const ROOT = path.resolve(__dirname, '../../../..');
const FIXTURES = path.join(__dirname, 'fixtures');

async function grey(file: string): Promise<Uint8Array> {
  const { data, width, height, channels } = await decodePngRaw(await readFile(path.join(FIXTURES, file)));
  expect([width, height, channels]).toEqual([256, 256, 1]);
  return new Uint8Array(data);
}

async function rgba(png: Buffer): Promise<Uint8Array> {
  const { data, width, height, channels } = await decodePngRaw(png);
  expect([width, height, channels]).toEqual([256, 256, 4]);
  return new Uint8Array(data);
}

function alphaPeak(pixels: Uint8Array): { x: number; y: number; alpha: number } {
  let best = { x: -1, y: -1, alpha: -1 };
  for (let i = 3; i < pixels.length; i += 4) {
    const alpha = pixels[i] as number;
    if (alpha > best.alpha) best = { x: ((i - 3) / 4) % 256, y: Math.floor((i - 3) / 4 / 256), alpha };
  }
  return best;
}

describe('review images (ONNX Runtime, file object store)', () => {
  let pool: InferencePool;
  let store: ObjectStore;
  let dir: string;
  let review: ReviewImagesService;
  const metrics = new ThoraxMetrics('inference');

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'thorax-review-'));
    const artifact = await loadModelArtifact(path.join(ROOT, 'models/thorax-tiny-cnn'));
    pool = await InferencePool.start(artifact, { workers: 1, intraOpThreads: 1, providers: ['cpu'], maps: true });
    store = createObjectStore({ kind: 'file', url: `file://${dir}`, directory: dir });
    const config = loadConfig(inferenceConfigSchema, { OBJECT_STORE_URL: `file://${dir}` });
    review = new ReviewImagesService(config, store, createLogger({ service: 't', version: '0', level: 'silent' }), metrics);
  }, 120_000);

  afterAll(async () => {
    await pool?.close();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['mass.png', 'Mass'],
    ['consolidation.png', 'Consolidation'],
  ])('the heatmap of %s peaks inside the region where %s was planted', async (file, label) => {
    const pixels = await grey(file);
    const planted = await grey(file.replace('.png', '.region.png'));
    const { scores, maps } = await pool.classify([pixels]);
    const metadata = pool.metadata;
    const k = metadata.labels.indexOf(label);
    expect(metadata.cam?.shape).toEqual(['batch', 14, 7, 7]);
    expect(maps?.[0]).toHaveLength(14 * 7 * 7);
    // The model finds the planted label on this image.
    expect(scores[0]?.[k]).toBeGreaterThanOrEqual(metadata.thresholds[k] as number);
    const positives = metadata.labels.flatMap((_, i) => ((scores[0]?.[i] ?? 0) >= (metadata.thresholds[i] ?? 1) ? [i] : []));
    const stored = await review.keep({ id: `1.2.826.0.1.${label}`, pixels, width: 256, height: 256, metadata, maps: maps?.[0] ?? null, positives });

    // The wire image comes back byte for byte; one heatmap per positive label, under review/<id>/<version>/.
    expect(stored.wireImage).toMatchObject({ width: 256, height: 256 });
    expect(store.keyOf(stored.wireImage?.uri ?? '')).toBe(`review/1.2.826.0.1.${label}/${metadata.version}/wire.png`);
    const wire = await decodePngRaw(await store.get(stored.wireImage?.uri ?? ''));
    expect([wire.width, wire.height, wire.channels]).toEqual([256, 256, 1]);
    expect(wire.data.equals(Buffer.from(pixels))).toBe(true);
    expect(stored.heatmaps.map((h) => h.label)).toEqual(positives.map((i) => metadata.labels[i]));
    const heatmap = stored.heatmaps.find((h) => h.label === label);
    expect(store.keyOf(heatmap?.uri ?? '')).toBe(`review/1.2.826.0.1.${label}/${metadata.version}/heatmap-${label}.png`);

    const peak = alphaPeak(await rgba(await store.get(heatmap?.uri ?? '')));
    expect(peak.alpha).toBe(200);
    expect(planted[peak.y * 256 + peak.x]).toBe(255);
  });

  it('stores only the wire image for a model without maps, and nothing (no dangling reference) when the store fails', async () => {
    const pixels = await grey('mass.png');
    const metadata = { ...pool.metadata, cam: null };
    const plain = await review.keep({ id: 'old-model', pixels, width: 256, height: 256, metadata, maps: null, positives: [4] });
    expect(plain.heatmaps).toEqual([]);
    expect(await store.exists(plain.wireImage?.uri ?? '')).toBe(true);

    const broken = { ...store, put: () => Promise.reject(new Error('disk full')) } as ObjectStore;
    const config = loadConfig(inferenceConfigSchema, {});
    const failingMetrics = new ThoraxMetrics('inference');
    const failing = new ReviewImagesService(config, broken, createLogger({ service: 't', version: '0', level: 'silent' }), failingMetrics);
    const { maps } = await pool.classify([pixels]);
    await expect(failing.keep({ id: 'x', pixels, width: 256, height: 256, metadata: pool.metadata, maps: maps?.[0] ?? null, positives: [4] })).resolves.toEqual({
      wireImage: null,
      heatmaps: [],
    });
    expect(await failingMetrics.registry.getSingleMetricAsString('thorax_review_images_total')).toMatch(/outcome="failed"[^}]*} 1/);
  });
});
