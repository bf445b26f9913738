/** The committed demonstration model announces itself: a start-up warning and provenance in every event. */
import { loadConfig } from '@thorax/config';
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import path from 'node:path';
import { inferenceConfigSchema } from '../config';
import { ModelService } from './model.service';

jest.setTimeout(60_000);

const committed = path.resolve(__dirname, '../../../../models/thorax-tiny-cnn');

describe('ModelService with the committed model', () => {
  it('logs a warning at start-up that the model is a synthetic demonstration, not for clinical use', async () => {
    const lines: string[] = [];
    const log = createLogger({ service: 'inference', version: '0', level: 'info' }, { write: (line: string) => void lines.push(line) });
    const config = loadConfig(inferenceConfigSchema, {
      MODEL_DIR: committed,
      INFERENCE_PROVIDERS: 'cpu',
      INFERENCE_MODEL_POLL_MS: '0',
      INFERENCE_WORKERS: '1',
      INFERENCE_MAX_BATCH: '2',
    });
    const models = new ModelService(config, log, new ThoraxMetrics('inference'), new HealthRegistry());
    await models.onModuleInit();
    try {
      expect(models.primary.pool.metadata.provenance).toMatchObject({ data: 'synthetic', clinical: false });
    } finally {
      await models.onApplicationShutdown();
    }
    const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['level'] === 'warn');
    expect(warnings).toEqual([
      expect.objectContaining({
        role: 'primary',
        model: 'thorax-tiny-cnn',
        trainingData: 'synthetic',
        dataset: 'thorax-synthetic-cxr',
        clinical: false,
        msg: 'model is not for clinical use: Demonstration model trained on synthetic images; not for clinical use.',
      }),
    ]);
  });
});
