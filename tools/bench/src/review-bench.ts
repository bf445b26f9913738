/**
 * What review images cost per image, on this machine, with the committed model: `npm run build`
 * first, then `node dist/tools/bench/src/review-bench.js` (BENCH_IMAGES, default 256; BENCH_ROUNDS, 5).
 *
 *  (a) ONNX Runtime, batch 8, one worker thread: probabilities only vs probabilities + the `cam`
 *      output (what INFERENCE_REVIEW_IMAGES adds to the model run);
 *  (b) the review images of one image, as the inference service makes them (libs/imaging +
 *      a file object store in a temporary directory): the wire PNG alone, and the wire PNG plus
 *      one heatmap per positive label of the model's own findings.
 * Rounds alternate between the variants; the table gives the median round. A command, not a test.
 */
import { encodeGreyPng, encodeRgbaPng, heatmapRgba } from '@thorax/imaging';
import { InferencePool, loadModelArtifact } from '@thorax/model-runtime';
import { createObjectStore } from '@thorax/object-store';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';

const IMAGES = Number(process.env['BENCH_IMAGES'] ?? 256);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const BATCH = 8;
const ROOT = path.resolve(__dirname, '../../../..');

/** Wire-like images: smooth random fields with a bright blob, so the model finds a few labels. */
function images(count: number): Uint8Array[] {
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  return Array.from({ length: count }, () => {
    const cx = 60 + random() * 136;
    const cy = 60 + random() * 136;
    const base = 60 + random() * 60;
    const image = new Uint8Array(256 * 256);
    for (let y = 0; y < 256; y += 1)
      for (let x = 0; x < 256; x += 1) {
        const blob = 120 * Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 400);
        image[y * 256 + x] = Math.min(255, base + blob + 20 * Math.sin(x / 9) * Math.cos(y / 11) + random() * 10);
      }
    return image;
  });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

async function main(): Promise<void> {
  const artifact = await loadModelArtifact(path.join(ROOT, 'models/thorax-tiny-cnn'));
  const cam = artifact.metadata.cam;
  if (!cam) throw new Error(`${artifact.path} has no cam output`);
  const input = images(IMAGES);
  const start = (maps: boolean) => InferencePool.start(artifact, { workers: 1, intraOpThreads: 1, providers: ['cpu'], maps, warmUpBatchSizes: [BATCH] });
  const plain = await start(false);
  const withMaps = await start(true);
  const run = async (pool: InferencePool) => {
    const started = process.hrtime.bigint();
    const out = [];
    for (let i = 0; i < input.length; i += BATCH) out.push(await pool.classify(input.slice(i, i + BATCH)));
    return { ms: Number(process.hrtime.bigint() - started) / 1e6 / input.length, out };
  };
  const model: Record<'plain' | 'maps', number[]> = { plain: [], maps: [] };
  let results: Awaited<ReturnType<typeof run>>['out'] = [];
  for (let r = 0; r < ROUNDS; r += 1) {
    model.plain.push((await run(plain)).ms);
    const m = await run(withMaps);
    model.maps.push(m.ms);
    results = m.out;
  }
  await Promise.all([plain.close(), withMaps.close()]);

  const scores = results.flatMap((b) => b.scores);
  const maps = results.flatMap((b) => b.maps ?? []);
  const { labels, thresholds } = artifact.metadata;
  const positives = scores.map((s) => labels.flatMap((_, k) => ((s[k] ?? 0) >= (thresholds[k] ?? 1) ? [k] : [])));
  const dir = await mkdtemp(path.join(tmpdir(), 'thorax-review-bench-'));
  const store = createObjectStore({ kind: 'file', url: `file://${dir}`, directory: dir });
  const geometry = { height: cam.shape[2], width: cam.shape[3], region: cam.region };
  const review = async (withHeatmaps: boolean) => {
    const started = process.hrtime.bigint();
    let bytes = 0;
    // As the service does: images of one batch in parallel, each writing its objects in parallel.
    for (let i = 0; i < input.length; i += BATCH) {
      await Promise.all(
        input.slice(i, i + BATCH).map(async (pixels, j) => {
          const n = i + j;
          const png = [encodeGreyPng(pixels, 256, 256)];
          if (withHeatmaps) for (const k of positives[n] ?? []) png.push(encodeRgbaPng(heatmapRgba(maps[n] as Float32Array, k, geometry, 256, 256), 256, 256));
          const encoded = await Promise.all(png);
          const stored = await Promise.all(encoded.map((b, p) => store.put(`review/b${n}/v/${p}.png`, b, { contentType: 'image/png' })));
          bytes += stored.reduce((sum, s) => sum + s.size, 0);
        }),
      );
    }
    return { ms: Number(process.hrtime.bigint() - started) / 1e6 / input.length, bytes: bytes / input.length };
  };
  const store_: Record<'wire' | 'heatmaps', { ms: number; bytes: number }[]> = { wire: [], heatmaps: [] };
  for (let r = 0; r < ROUNDS; r += 1) {
    store_.wire.push(await review(false));
    store_.heatmaps.push(await review(true));
  }
  await store.close();
  await rm(dir, { recursive: true, force: true });
  const perImagePositives = positives.reduce((a, p) => a + p.length, 0) / positives.length;
  const figures = {
    model: `${artifact.metadata.name} ${artifact.metadata.version}`,
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
    images: IMAGES,
    rounds: ROUNDS,
    positivesPerImage: Number(perImagePositives.toFixed(2)),
    msPerImage: {
      modelProbabilitiesOnly: Number(median(model.plain).toFixed(3)),
      modelWithCam: Number(median(model.maps).toFixed(3)),
      reviewWirePngOnly: Number(median(store_.wire.map((s) => s.ms)).toFixed(3)),
      reviewWireAndHeatmaps: Number(median(store_.heatmaps.map((s) => s.ms)).toFixed(3)),
    },
    bytesPerImage: {
      wire: Math.round(median(store_.wire.map((s) => s.bytes))),
      wireAndHeatmaps: Math.round(median(store_.heatmaps.map((s) => s.bytes))),
    },
  };
  process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
}

void main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
