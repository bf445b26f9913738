/** ModelService on real model files and real worker threads: hot swap, failed loads, canary. */
import { loadConfig } from '@thorax/config';
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inferenceConfigSchema } from '../config';
import { canaryBucket, ModelService } from './model.service';

jest.setTimeout(60_000);

const committed = path.resolve(__dirname, '../../../../models/thorax-tiny-cnn');

async function modelDir(versions: string[]): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'thorax-models-'));
  const { listModelVersions } = await import('@thorax/model-runtime');
  const [source] = await listModelVersions(committed);
  for (const v of versions) {
    await mkdir(path.join(dir, v));
    await copyFile(path.join(committed, source ?? '', 'model.onnx'), path.join(dir, v, 'model.onnx'));
  }
  return dir;
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
