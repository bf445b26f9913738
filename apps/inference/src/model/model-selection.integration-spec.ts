/**
 * ModelService under a changing model selection (the admin API's control topic): the initial
 * selection wins over the INFERENCE_* defaults, a change is loaded in full before it is swapped in,
 * and a change that fails to load leaves every served version as it was. Real ONNX Runtime.
 */
import { loadConfig } from '@thorax/config';
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ModelSelection } from '../admin/model-selection';
import { inferenceConfigSchema } from '../config';
import { ModelService, type ModelSelectionSource } from './model.service';

jest.setTimeout(60_000);

const committed = path.resolve(__dirname, '../../../../models/thorax-tiny-cnn');
let dir: string;
const services: ModelService[] = [];

/** A selection source as the control topic would be: an initial selection, then changes pushed by the test. */
class Source implements ModelSelectionSource {
  listener: ((s: ModelSelection) => Promise<void>) | null = null;
  constructor(private readonly first: ModelSelection) {}
  async initial(): Promise<ModelSelection> {
    return this.first;
  }
  onChange(listener: (s: ModelSelection) => Promise<void>): void {
    this.listener = listener;
  }
}

function start(source: ModelSelectionSource | null, env: Record<string, string> = {}): ModelService {
  const config = loadConfig(inferenceConfigSchema, { MODEL_DIR: dir, INFERENCE_PROVIDERS: 'cpu', INFERENCE_MODEL_POLL_MS: '0', INFERENCE_MAX_BATCH: '2', INFERENCE_WORKERS: '1', ...env });
  const models = new ModelService(config, createLogger({ service: 't', version: '0', level: 'silent' }), new ThoraxMetrics('inference'), new HealthRegistry(), source);
  services.push(models);
  return models;
}

const served = (m: ModelService) => ({
  primary: m.slots.primary?.directory ?? null,
  canary: m.slots.canary?.directory ?? null,
  shadow: m.slots.shadow?.directory ?? null,
});

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'thorax-selection-'));
  const [latest] = (await readdir(committed)).sort().reverse();
  for (const v of ['1.0.0', '2.0.0', '3.0.0']) {
    await mkdir(path.join(dir, v));
    await copyFile(path.join(committed, latest as string, 'model.onnx'), path.join(dir, v, 'model.onnx'));
  }
  // Sorts highest, but is no ONNX model: its load fails.
  await mkdir(path.join(dir, '9.0.0'));
  await writeFile(path.join(dir, '9.0.0', 'model.onnx'), 'not an ONNX model');
});

afterAll(async () => {
  await Promise.all(services.map((s) => s.onApplicationShutdown()));
  await rm(dir, { recursive: true, force: true });
});

describe('ModelService with a model selection source', () => {
  it('serves the initial selection instead of the INFERENCE_* defaults', async () => {
    const models = start(new Source({ primary: '2.0.0', canary: { version: '1.0.0', percent: 40 }, shadow: '3.0.0' }), { INFERENCE_MODEL_VERSION: '1.0.0' });
    await models.onModuleInit();
    expect(served(models)).toEqual({ primary: '2.0.0', canary: '1.0.0', shadow: '3.0.0' });
    // 40 % of ids by hash go to the canary.
    const ids = Array.from({ length: 1000 }, (_, i) => `img-${i}`);
    const share = ids.filter((id) => models.route(id) === models.slots.canary).length / ids.length;
    expect(share).toBeGreaterThan(0.35);
    expect(share).toBeLessThan(0.45);
  });

  it('falls back to the defaults when the initial selection does not load', async () => {
    const models = start(new Source({ primary: '9.0.0', canary: null, shadow: null }), { INFERENCE_MODEL_VERSION: '1.0.0' });
    await models.onModuleInit();
    expect(served(models)).toEqual({ primary: '1.0.0', canary: null, shadow: null });
    expect(models.selection.primary).toBe('1.0.0');
  });

  it('applies a change in full, and keeps everything served when one part fails to load', async () => {
    const source = new Source({ primary: '1.0.0', canary: null, shadow: null });
    const models = start(source);
    await models.onModuleInit();
    const before = models.slots.primary;
    expect(served(models)).toEqual({ primary: '1.0.0', canary: null, shadow: null });

    await expect(models.applySelection({ primary: '2.0.0', canary: { version: '3.0.0', percent: 100 }, shadow: null })).resolves.toBe('applied');
    expect(served(models)).toEqual({ primary: '2.0.0', canary: '3.0.0', shadow: null });
    expect(models.route('any')).toBe(models.slots.canary);
    expect(models.slots.primary).not.toBe(before);

    // The shadow part fails: nothing changes, the canary share included.
    const canary = models.slots.canary;
    await expect(models.applySelection({ primary: '1.0.0', canary: { version: '3.0.0', percent: 0 }, shadow: '9.0.0' })).rejects.toThrow();
    expect(served(models)).toEqual({ primary: '2.0.0', canary: '3.0.0', shadow: null });
    expect(models.slots.canary).toBe(canary);
    expect(models.selection).toEqual({ primary: '2.0.0', canary: { version: '3.0.0', percent: 100 }, shadow: null });

    // Changes pushed by the source go through the same path; unpinned serves the highest that loads.
    await source.listener?.({ primary: '3.0.0', canary: null, shadow: null });
    expect(served(models)).toEqual({ primary: '3.0.0', canary: null, shadow: null });
    await expect(models.applySelection({ primary: null, canary: null, shadow: null })).rejects.toThrow();
    expect(served(models)).toEqual({ primary: '3.0.0', canary: null, shadow: null });
  });
});
