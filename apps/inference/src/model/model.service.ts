import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Classifier, loadModelArtifact } from '@thorax/model-runtime';
import { HealthRegistry, healthy, LOGGER, type Logger, ThoraxMetrics, unhealthy } from '@thorax/observability';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';

/**
 * Loads the model from MODEL_DIR (labels, thresholds and input spec from the ONNX file's own
 * metadata), picks the first execution provider that works, warms it up, then reports ready.
 */
@Injectable()
export class ModelService implements OnModuleInit, OnApplicationShutdown {
  private active: Classifier | null = null;
  private loadError: string | null = null;

  constructor(
    @Inject(INFERENCE_CONFIG) private readonly config: InferenceConfig,
    @Inject(LOGGER) private readonly log: Logger,
    private readonly metrics: ThoraxMetrics,
    health: HealthRegistry,
  ) {
    health.addReadiness('model', () =>
      this.active ? healthy : unhealthy(this.loadError ?? 'model not loaded yet'),
    );
  }

  get classifier(): Classifier {
    if (!this.active) throw new Error('model not loaded');
    return this.active;
  }

  async onModuleInit(): Promise<void> {
    try {
      const artifact = await loadModelArtifact(this.config.MODEL_DIR);
      const classifier = await Classifier.create(artifact, {
        providers: this.config.INFERENCE_PROVIDERS,
        intraOpThreads: this.config.INFERENCE_INTRA_OP_THREADS,
        onProviderEvent: (e) =>
          e.outcome === 'active'
            ? this.log.info({ provider: e.provider }, 'execution provider active')
            : this.log.warn({ provider: e.provider, reason: e.reason }, `execution provider ${e.outcome}; falling back`),
      });
      const { width, height } = classifier.inputSize;
      const started = process.hrtime.bigint();
      await classifier.classify([new Uint8Array(width * height)]);
      const warmupMs = Number(process.hrtime.bigint() - started) / 1e6;
      const { name, version, labels } = classifier.metadata;
      this.metrics.modelInfo.set({ model: name, version, provider: classifier.provider }, 1);
      this.active = classifier;
      this.log.info(
        { model: name, version, sha256: classifier.sha256, provider: classifier.provider, labels: labels.length, path: artifact.path, warmupMs },
        'model loaded',
      );
    } catch (error) {
      this.loadError = (error as Error).message;
      this.log.error({ err: error, modelDir: this.config.MODEL_DIR }, 'model could not be loaded');
      throw error;
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.active?.release();
  }
}
