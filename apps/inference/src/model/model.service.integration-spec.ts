/**
 * ModelService on real model files and real worker threads: hot swap (forward only), failed
 * loads, a deleted served version, canary, and the batch timeout with a slow test model.
 */
import { loadConfig } from '@thorax/config';
import { PixelFormat, type PreprocessedImage, Priority } from '@thorax/contracts';
import type { OutgoingRecord } from '@thorax/kafka';
import { BatchTimeoutError, Classifier, loadModelArtifact } from '@thorax/model-runtime';
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import { SLOW_MODEL_DIR, slowModelLevel } from '@thorax/testing';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inferenceConfigSchema } from '../config';
import type { ReviewImagesService } from '../review/review-images.service';
import { InferenceService } from '../tensors/inference.service';
import { canaryBucket, ModelService } from './model.service';

jest.setTimeout(60_000);

const committed = path.resolve(__dirname, '../../../../models/thorax-tiny-cnn');

async function modelDir(versions: string[], from = committed): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'thorax-models-'));
  const { listModelVersions } = await import('@thorax/model-runtime');
  const [source] = await listModelVersions(from);
  for (const v of versions) {
    await mkdir(path.join(dir, v));
    await copyFile(path.join(from, source ?? '', 'model.onnx'), path.join(dir, v, 'model.onnx'));
  }
  return dir;
}

async function sample(metrics: ThoraxMetrics, name: string): Promise<{ labels: object; value: number }[]> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  // Without the `service` default label every series carries.
  return (metric?.values ?? []).map((v) => {
    const { service: _service, ...labels } = v.labels;
    return { labels, value: v.value };
  });
}

function service(env: Record<string, string>) {
  const config = loadConfig(inferenceConfigSchema, {
    INFERENCE_PROVIDERS: 'cpu',
    INFERENCE_MODEL_POLL_MS: '0',
    INFERENCE_MAX_BATCH: '4',
    ...env,
  });
  const health = new HealthRegistry();
  const metrics = new ThoraxMetrics('inference');
  return {
    models: new ModelService(config, createLogger({ service: 't', version: '0', level: 'silent' }), metrics, health),
    health,
    metrics,
  };
}

describe('ModelService', () => {
  const dirs: string[] = [];
  afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('serves the highest version, swaps in a newer one, and keeps the old one when a load fails', async () => {
    const dir = await modelDir(['2026.11.30-9']);
    dirs.push(dir);
    const { models, health, metrics } = service({ MODEL_DIR: dir });
    expect((await health.ready()).status).toBe('error');
    await models.onModuleInit();
    try {
      expect((await health.ready()).status).toBe('ok');
      expect(models.primary.directory).toBe('2026.11.30-9');
      expect(await models.checkForNewVersion()).toBe('unchanged');

      // 10 sorts after 9 (numeric-aware), so it becomes the primary.
      await mkdir(path.join(dir, '2026.11.30-10'));
      await copyFile(path.join(dir, '2026.11.30-9', 'model.onnx'), path.join(dir, '2026.11.30-10', 'model.onnx'));
      expect(await models.checkForNewVersion()).toBe('swapped');
      expect(models.primary.directory).toBe('2026.11.30-10');
      const scores = await models.primary.classify(new Uint8Array(256 * 256).fill(90), false);
      expect(scores).toHaveLength(14);

      // A broken newer version is refused; the current one keeps serving.
      await mkdir(path.join(dir, '2026.11.30-11'));
      await writeFile(path.join(dir, '2026.11.30-11', 'model.onnx'), Buffer.from('not an onnx model'));
      expect(await models.checkForNewVersion()).toBe('failed');
      expect(models.primary.directory).toBe('2026.11.30-10');
      expect(await models.primary.classify(new Uint8Array(256 * 256).fill(90), false)).toHaveLength(14);

      const info = (await metrics.modelInfo.get()).values;
      expect(info).toHaveLength(1);
    } finally {
      await models.onApplicationShutdown();
    }
  });

  it('never rolls back on its own: a deleted served version keeps serving, flagged; newer ones still swap in', async () => {
    const dir = await modelDir(['2026.11.30-9', '2026.11.30-10']);
    dirs.push(dir);
    const { models, health, metrics } = service({ MODEL_DIR: dir });
    await models.onModuleInit();
    try {
      expect(models.primary.directory).toBe('2026.11.30-10');
      const { name, version } = models.primary;
      expect(await models.poll()).toBe('unchanged');
      expect(await sample(metrics, 'thorax_model_directory_missing')).toEqual([
        { labels: { role: 'primary', model: name, version }, value: 0 },
      ]);

      // The newest directory disappears: 9 is now the highest, but it is older than the served 10.
      await rm(path.join(dir, '2026.11.30-10'), { recursive: true });
      expect(await models.poll()).toBe('unchanged');
      expect(models.primary.directory).toBe('2026.11.30-10');
      expect(await models.primary.classify(new Uint8Array(256 * 256).fill(90), false)).toHaveLength(14);
      expect(await sample(metrics, 'thorax_model_directory_missing')).toEqual([
        { labels: { role: 'primary', model: name, version }, value: 1 },
      ]);
      // Still ready: it serves from memory.
      expect((await health.ready()).status).toBe('ok');

      // A version newer than the served one is still swapped in, and the flag goes with the old one.
      await mkdir(path.join(dir, '2026.11.30-11'));
      await copyFile(path.join(dir, '2026.11.30-9', 'model.onnx'), path.join(dir, '2026.11.30-11', 'model.onnx'));
      expect(await models.poll()).toBe('swapped');
      expect(models.primary.directory).toBe('2026.11.30-11');
      await models.poll();
      expect(await sample(metrics, 'thorax_model_directory_missing')).toEqual([
        { labels: { role: 'primary', model: name, version }, value: 0 },
      ]);
    } finally {
      await models.onApplicationShutdown();
    }
  });

  it('rolls back only when pinned', async () => {
    const dir = await modelDir(['9', '10']);
    dirs.push(dir);
    const { models } = service({ MODEL_DIR: dir, INFERENCE_MODEL_VERSION: '9' });
    await models.onModuleInit();
    try {
      expect(models.primary.directory).toBe('9');
      expect(await models.poll()).toBe('unchanged');
      expect(models.primary.directory).toBe('9');
    } finally {
      await models.onApplicationShutdown();
    }
  });

  it('times out a hung batch: INFERENCE_FAILED (retried by the consumer), worker replaced, counted', async () => {
    const dir = await modelDir(['1'], SLOW_MODEL_DIR);
    dirs.push(dir);
    // A first pixel that runs about 3.5 s on this machine now, against the 1 s timeout.
    const inline = await Classifier.create(await loadModelArtifact(SLOW_MODEL_DIR), {
      providers: ['cpu'],
      intraOpThreads: 1,
    });
    const hangLevel = await slowModelLevel((batch) => inline.classify(batch), 3_500).finally(() => inline.release());
    const { models, health, metrics } = service({
      MODEL_DIR: dir,
      INFERENCE_BATCH_TIMEOUT_MS: '1000',
      INFERENCE_MAX_DELAY_MS: '0',
    });
    await models.onModuleInit();
    const published: OutgoingRecord[] = [];
    const inference = new InferenceService(
      loadConfig(inferenceConfigSchema, {}),
      { publish: async (records) => void published.push(...records) },
      createLogger({ service: 't', version: '0', level: 'silent' }),
      models,
      metrics,
      { enabled: false } as ReviewImagesService,
    );
    const forward: Record<string, string> = {};
    const pixels = Buffer.alloc(256 * 256);
    pixels[0] = hangLevel;
    const image: PreprocessedImage = {
      id: 'img-1',
      study: undefined,
      priority: Priority.PRIORITY_ROUTINE,
      receivedAt: new Date(),
      width: 256,
      height: 256,
      pixelFormat: PixelFormat.PIXEL_FORMAT_GREY8,
      pixels,
      source: undefined,
      preprocessing: 'thorax.wire.v2',
    };
    try {
      const error = await inference.infer(image, forward).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'INFERENCE_FAILED', transient: true });
      expect((error as { cause?: unknown }).cause).toBeInstanceOf(BatchTimeoutError);
      expect(published).toEqual([]);
      const { name, version } = models.primary;
      expect(await sample(metrics, 'thorax_inference_batch_timeouts_total')).toEqual([
        { labels: { model: name, version }, value: 1 },
      ]);
      // Both reasons' series exist from the load (at 0), so an alert sees the first of each.
      expect(await sample(metrics, 'thorax_inference_worker_restarts_total')).toEqual([
        { labels: { model: name, version, reason: 'exit' }, value: 0 },
        { labels: { model: name, version, reason: 'timeout' }, value: 1 },
      ]);
      // One of two workers is stuck: still live, and the other serves a normal image at once.
      expect((await health.live()).status).toBe('ok');
      await expect(inference.infer({ ...image, pixels: Buffer.alloc(256 * 256) }, forward)).resolves.toMatchObject({
        status: 'ok',
      });
      const deadline = Date.now() + 30_000;
      while (models.primary.pool.stuck > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(models.primary.pool.stuck).toBe(0);
    } finally {
      await models.onApplicationShutdown();
    }
  });

  it('routes a stable hash share of ids to the canary', async () => {
    const dir = await modelDir(['1', '2']);
    dirs.push(dir);
    const { models } = service({
      MODEL_DIR: dir,
      INFERENCE_MODEL_VERSION: '1',
      INFERENCE_CANARY_VERSION: '2',
      INFERENCE_CANARY_PERCENT: '25',
    });
    await models.onModuleInit();
    try {
      const ids = Array.from({ length: 400 }, (_, i) => `img-${i}`);
      const toCanary = ids.filter((id) => models.route(id).role === 'canary');
      expect(toCanary.length).toBeGreaterThan(60);
      expect(toCanary.length).toBeLessThan(140);
      expect(ids.filter((id) => canaryBucket(id) < 25)).toEqual(toCanary);
      expect(models.route('img-1').role).toBe(models.route('img-1').role);
    } finally {
      await models.onApplicationShutdown();
    }
  });
});
