/**
 * INFERENCE_PROVIDERS=cuda,cpu on a machine without an NVIDIA GPU (every machine these tests run
 * on): the service logs once why CUDA did not load, serves on CPU and says so in its metrics. Real
 * onnxruntime-node, real worker threads, the committed model.
 */
import { ConfigError, loadConfig } from '@thorax/config';
import { cudaProviderInstalled } from '@thorax/model-runtime';
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import { Writable } from 'node:stream';
import { inferenceConfigSchema } from '../config';
import { ModelService } from './model.service';

jest.setTimeout(60_000);

describe('execution provider fallback', () => {
  it('logs one line naming why CUDA did not load, then serves on CPU', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const config = loadConfig(inferenceConfigSchema, {
      INFERENCE_PROVIDERS: 'cuda,cpu',
      INFERENCE_WORKERS: '2',
      INFERENCE_MODEL_POLL_MS: '0',
      INFERENCE_MAX_BATCH: '2',
    });
    const metrics = new ThoraxMetrics('inference');
    const models = new ModelService(
      config,
      createLogger({ service: 'inference', version: '0', level: 'info' }, sink),
      metrics,
      new HealthRegistry(),
    );
    await models.onModuleInit();
    try {
      const fallbacks = lines.filter((l) => l['provider'] === 'cuda');
      // Two workers meet the same failure; it is logged once.
      expect(fallbacks).toHaveLength(1);
      const [line] = fallbacks;
      expect(line).toMatchObject({ level: 'warn', role: 'primary', outcome: 'failed', providers: ['cuda', 'cpu'] });
      const reason = cudaProviderInstalled()
        ? 'no NVIDIA driver: libcuda.so.1 is not on the library path (the GPU node runtime mounts it)'
        : expect.stringMatching(
            /^the CUDA provider libraries are not installed \(.*scripts\/cuda-provider\.sh install/,
          );
      expect(line?.['reason']).toEqual(reason);
      expect(line?.['msg']).toBe(
        `execution provider cuda did not load: ${String(line?.['reason'])}; trying the next one`,
      );

      expect(lines.find((l) => l['msg'] === 'model loaded and warmed up')).toMatchObject({
        provider: 'cpu',
        workers: 2,
      });
      const info = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'thorax_model_info');
      expect(info?.values.map((v) => v.labels['provider'])).toEqual(['cpu']);
      const scores = await models.primary.classify(new Uint8Array(256 * 256).fill(90), false);
      expect(scores).toHaveLength(14);
    } finally {
      await models.onApplicationShutdown();
    }
  });

  it('refuses openvino at start-up with a configuration error that names why', () => {
    expect(() => loadConfig(inferenceConfigSchema, { INFERENCE_PROVIDERS: 'openvino,cpu' })).toThrow(ConfigError);
    expect(() => loadConfig(inferenceConfigSchema, { INFERENCE_PROVIDERS: 'openvino,cpu' })).toThrow(
      /INFERENCE_PROVIDERS\.0: openvino: no onnxruntime-node 1\.30 build can load the OpenVINO execution provider/,
    );
  });
});
