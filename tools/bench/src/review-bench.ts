/**
 * What review objects cost per image, on this machine, with the committed model: `npm run build`
 * first, then `node --expose-gc dist/tools/bench/src/review-bench.js` (BENCH_IMAGES, default 256;
 * BENCH_ROUNDS, 5). With --expose-gc every measurement starts after a full collection, so one
 * variant's garbage is not collected on the next one's time.
 *
 *  (a) ONNX Runtime, batch 8, one worker thread: probabilities only vs probabilities + the `cam`
 *      output (what INFERENCE_REVIEW_IMAGES adds to the model run);
 *  (b) what inference stores per image (libs/imaging + libs/contracts + a file object store in a
 *      temporary directory), images of a batch in parallel as the service does. Now: the
 *      uncompressed wire PNG alone, and with the `thorax.cam.v1` maps object (what it does).
 *      Before: the zlib-compressed wire PNG (sharp, level 6) alone, and with one heatmap PNG per
 *      positive label (what earlier releases did). And raw wire pixels with the maps in one
 *      object (an alternative, not used: see docs/inference.md);
 *  (c) what results spends on a heatmap asked for: read and decode the maps object, heatmapRgba,
 *      RGBA PNG.
 * CPU is the process's user + system time (every thread: libvips and libuv included) per image;
 * wall is elapsed time per image. Rounds alternate between the variants; the figures are the
 * median round. A command, not a test.
 */
import { encodeActivationMaps, decodeActivationMaps } from '@thorax/contracts';
import { encodeGreyPng, encodeRgbaPng, heatmapRgba } from '@thorax/imaging';
import { InferencePool, loadModelArtifact } from '@thorax/model-runtime';
import { createObjectStore } from '@thorax/object-store';
import { mkdtemp, rm } from 'node:fs/promises';
import sharp from 'sharp';
import { cpus, loadavg, tmpdir } from 'node:os';
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
  const camObject = (n: number) =>
    encodeActivationMaps({
      labels,
      height: geometry.height,
      width: geometry.width,
      image: { width: 256, height: 256 },
      region: cam.region,
      units: 'logit',
      bias: cam.bias,
      maps: maps[n] as Float32Array,
    });
  type Variant = 'wire' | 'wireAndMaps' | 'zlibWire' | 'zlibWireAndHeatmaps' | 'rawAndMapsOneObject';
  // The wire PNG as earlier releases wrote it: zlib level 6 on libvips' threads.
  const zlibWire = (pixels: Uint8Array) =>
    sharp(pixels, { raw: { width: 256, height: 256, channels: 1 } }).toColourspace('b-w').png({ compressionLevel: 6, adaptiveFiltering: false }).toBuffer();
  /** The objects of image n in a variant (each promise: one object's bytes). */
  const objectsOf = (variant: Variant, n: number): Promise<Buffer>[] => {
    const pixels = input[n] as Uint8Array;
    switch (variant) {
      case 'wire':
        return [Promise.resolve(encodeGreyPng(pixels, 256, 256))];
      case 'wireAndMaps':
        return [Promise.resolve(encodeGreyPng(pixels, 256, 256)), Promise.resolve(camObject(n))];
      case 'zlibWire':
        return [zlibWire(pixels)];
      case 'zlibWireAndHeatmaps':
        return [zlibWire(pixels), ...(positives[n] ?? []).map((k) => encodeRgbaPng(heatmapRgba(maps[n] as Float32Array, k, geometry, 256, 256), 256, 256))];
      case 'rawAndMapsOneObject':
        return [Promise.resolve(Buffer.concat([camObject(n), pixels]))];
    }
  };
  const inference = async (variant: Variant) => {
    settle();
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    let bytes = 0;
    let objects = 0;
    // As the service does: images of one batch in parallel, each writing its objects in parallel.
    for (let i = 0; i < input.length; i += BATCH) {
      await Promise.all(
        input.slice(i, i + BATCH).map(async (_, j) => {
          const n = i + j;
          const stored = await Promise.all(objectsOf(variant, n).map(async (b, p) => store.put(`review/b${n}/v/${variant}-${p}`, await b)));
          bytes += stored.reduce((sum, o) => sum + o.size, 0);
          objects += stored.length;
        }),
      );
    }
    return perImage(cpu, started, input.length, { bytes: bytes / input.length, objects: objects / input.length });
  };
  // Results: one heatmap per positive label, rendered from the stored maps object when asked for.
  const mapUris = await Promise.all(input.map(async (_, n) => (await store.put(`review/m${n}/v/cam.bin`, camObject(n))).uri));
  const asked = positives.flatMap((ks, n) => ks.map((k) => ({ n, k })));
  const render = async () => {
    settle();
    const cpu = process.cpuUsage();
    const started = process.hrtime.bigint();
    for (let i = 0; i < asked.length; i += BATCH) {
      await Promise.all(
        asked.slice(i, i + BATCH).map(async ({ n, k }) => {
          const decoded = decodeActivationMaps(await store.get(mapUris[n] as string));
          return encodeRgbaPng(heatmapRgba(decoded.maps, k, decoded, 256, 256), 256, 256);
        }),
      );
    }
    return perImage(cpu, started, Math.max(1, asked.length), {});
  };
  const variants: Variant[] = ['wire', 'wireAndMaps', 'zlibWire', 'zlibWireAndHeatmaps', 'rawAndMapsOneObject'];
  const rounds = new Map<Variant | 'resultsPerHeatmap', Figures[]>();
  for (let r = 0; r < ROUNDS; r += 1) {
    for (const v of variants) rounds.set(v, [...(rounds.get(v) ?? []), await inference(v)]);
    rounds.set('resultsPerHeatmap', [...(rounds.get('resultsPerHeatmap') ?? []), await render()]);
  }
  await store.close();
  await rm(dir, { recursive: true, force: true });
  const perImagePositives = positives.reduce((a, p) => a + p.length, 0) / positives.length;
  const summary = Object.fromEntries(
    [...rounds].map(([name, figures]) => [
      name,
      {
        cpuMs: Number(median(figures.map((f) => f.cpuMs)).toFixed(3)),
        wallMs: Number(median(figures.map((f) => f.wallMs)).toFixed(3)),
        ...(figures[0]?.bytes !== undefined ? { bytes: Math.round(figures[0].bytes), objects: Number((figures[0].objects ?? 0).toFixed(2)) } : {}),
      },
    ]),
  );
  const figures = {
    model: `${artifact.metadata.name} ${artifact.metadata.version}`,
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
    loadAverage: Number((loadavg()[0] ?? 0).toFixed(2)),
    images: IMAGES,
    rounds: ROUNDS,
    positivesPerImage: Number(perImagePositives.toFixed(2)),
    msPerImage: {
      modelProbabilitiesOnly: Number(median(model.plain).toFixed(3)),
      modelWithCam: Number(median(model.maps).toFixed(3)),
    },
    reviewPerImage: summary,
  };
  process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
}

interface Figures {
  cpuMs: number;
  wallMs: number;
  bytes?: number;
  objects?: number;
}

/** A full collection before a measurement, when node runs with --expose-gc. */
function settle(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function perImage(cpu: NodeJS.CpuUsage, started: bigint, count: number, extra: Omit<Figures, 'cpuMs' | 'wallMs'>): Figures {
  const used = process.cpuUsage(cpu);
  return { cpuMs: (used.user + used.system) / 1000 / count, wallMs: Number(process.hrtime.bigint() - started) / 1e6 / count, ...extra };
}

void main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
