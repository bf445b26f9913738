/**
 * Review objects through the real ONNX Runtime session and a real (file) object store: per image
 * the wire PNG and one `thorax.cam.v1` object with every label's map, nothing else; the maps read
 * back are the model's, bit for bit, and the heatmap results renders from them for a synthetic
 * image with a planted sign peaks where the sign was planted.
 *
 * Fixtures (apps/trainer's synthetic generator, `planted_example(label, seed)`): `mass.png` (Mass
 * alone, seed 0) and `consolidation.png` (Consolidation alone, seed 1), 256² grey wire images,
 * with `<name>.region.png`, the pixels the generator's sign changed (255 inside).
 */
import { loadConfig } from '@thorax/config';
import { decodeActivationMaps } from '@thorax/contracts';
import { decodePngRaw, heatmapRgba } from '@thorax/imaging';
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

function alphaPeak(pixels: Uint8Array): { x: number; y: number; alpha: number } {
  let best = { x: -1, y: -1, alpha: -1 };
  for (let i = 3; i < pixels.length; i += 4) {
    const alpha = pixels[i] as number;
    if (alpha > best.alpha) best = { x: ((i - 3) / 4) % 256, y: Math.floor((i - 3) / 4 / 256), alpha };
  }
  return best;
}

async function keys(store: ObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out.sort();
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
  ])('keeps the wire image and every map of %s; the %s heatmap of those maps peaks where it was planted', async (file, label) => {
    const pixels = await grey(file);
    const planted = await grey(file.replace('.png', '.region.png'));
    const { scores, maps } = await pool.classify([pixels]);
    const metadata = pool.metadata;
    const cam = metadata.cam;
    const k = metadata.labels.indexOf(label);
    expect(cam?.shape).toEqual(['batch', 14, 7, 7]);
    expect(maps?.[0]).toHaveLength(14 * 7 * 7);
    // The model finds the planted label on this image.
    expect(scores[0]?.[k]).toBeGreaterThanOrEqual(metadata.thresholds[k] as number);
    const id = `1.2.826.0.1.${label}`;
    const stored = await review.keep({ id, pixels, width: 256, height: 256, metadata, maps: maps?.[0] ?? null });

    // Two objects under review/<id>/<version>/, no rendered heatmap.
    const prefix = `review/${id}/${metadata.version}/`;
    expect(await keys(store, prefix)).toEqual([`${prefix}cam.bin`, `${prefix}wire.png`]);
    // The wire image comes back byte for byte.
    expect(stored.wireImage).toMatchObject({ width: 256, height: 256 });
    expect(store.keyOf(stored.wireImage?.uri ?? '')).toBe(`${prefix}wire.png`);
    const wire = await decodePngRaw(await store.get(stored.wireImage?.uri ?? ''));
    expect([wire.width, wire.height, wire.channels]).toEqual([256, 256, 1]);
    expect(wire.data.equals(Buffer.from(pixels))).toBe(true);

    // The event's reference describes the object; the object holds the model's maps bit for bit.
    expect(stored.activationMaps).toEqual({
      uri: expect.stringMatching(/cam\.bin$/),
      format: 'thorax.cam.v1',
      labels: metadata.labels,
      height: 7,
      width: 7,
      region: { top: 16, left: 16, height: 224, width: 224 },
    });
    expect(store.keyOf(stored.activationMaps?.uri ?? '')).toBe(`${prefix}cam.bin`);
    const bytes = await store.get(stored.activationMaps?.uri ?? '');
    const decoded = decodeActivationMaps(bytes);
    expect(decoded.labels).toEqual(metadata.labels);
    expect(decoded.image).toEqual({ width: 256, height: 256 });
    expect(decoded.bias).toEqual(cam?.bias);
    expect(Buffer.from(decoded.maps.buffer).equals(Buffer.from((maps?.[0] as Float32Array).slice().buffer))).toBe(true);
    // 14 labels × 7 × 7 float32 plus a header of a few hundred bytes.
    expect(bytes.length - 14 * 49 * 4).toBeGreaterThan(100);
    expect(bytes.length).toBeLessThan(14 * 49 * 4 + 1024);
    // What a consumer of the object can check without Thorax code: mean + bias is the label's logit.
    for (let i = 0; i < 14; i += 1) {
      const cells = decoded.maps.subarray(i * 49, (i + 1) * 49);
      const logit = cells.reduce((a, v) => a + v, 0) / 49 + (decoded.bias[i] as number);
      expect(1 / (1 + Math.exp(-logit))).toBeCloseTo(scores[0]?.[i] as number, 4);
    }

    // The heatmap results renders from these maps peaks inside the planted sign.
    const peak = alphaPeak(heatmapRgba(decoded.maps, k, decoded, 256, 256));
    expect(peak.alpha).toBe(200);
    expect(planted[peak.y * 256 + peak.x]).toBe(255);
  });

  it('stores only the wire image for a model without maps, and nothing (no dangling reference) when the store fails', async () => {
    const pixels = await grey('mass.png');
    const metadata = { ...pool.metadata, cam: null };
    const plain = await review.keep({ id: 'old-model', pixels, width: 256, height: 256, metadata, maps: null });
    expect(plain.activationMaps).toBeNull();
    expect(await store.exists(plain.wireImage?.uri ?? '')).toBe(true);
    expect(await keys(store, `review/old-model/`)).toEqual([`review/old-model/${metadata.version}/wire.png`]);

    const broken = { ...store, put: () => Promise.reject(new Error('disk full')) } as ObjectStore;
    const config = loadConfig(inferenceConfigSchema, {});
    const failingMetrics = new ThoraxMetrics('inference');
    const failing = new ReviewImagesService(config, broken, createLogger({ service: 't', version: '0', level: 'silent' }), failingMetrics);
    const { maps } = await pool.classify([pixels]);
    await expect(failing.keep({ id: 'x', pixels, width: 256, height: 256, metadata: pool.metadata, maps: maps?.[0] ?? null })).resolves.toEqual({
      wireImage: null,
      activationMaps: null,
    });
    expect(await failingMetrics.registry.getSingleMetricAsString('thorax_review_images_total')).toMatch(/outcome="failed"[^}]*} 1/);
  });
});
