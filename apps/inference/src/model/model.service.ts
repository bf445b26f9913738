import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { InferencePool, listModelVersions, loadModelArtifact } from '@thorax/model-runtime';
import { HealthRegistry, healthy, LOGGER, type Logger, ThoraxMetrics, unhealthy } from '@thorax/observability';
import { createHash } from 'node:crypto';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';
import { ModelSlot } from './model-slot';

/**
 * Serves the model versions found in MODEL_DIR: a primary (pinned, or the highest version, hot
 * swapped when a newer one appears: loaded in fresh workers, warmed up at every batch size, then
 * swapped in atomically; a failed load keeps the old one), an optional canary that takes a share
 * of images by a hash of their id, and an optional shadow that sees every image but whose findings
 * are never the primary result. Labels, thresholds and input size come from each ONNX file.
 */
@Injectable()
export class ModelService implements OnModuleInit, OnApplicationShutdown {
  private primarySlot: ModelSlot | null = null;
  private canarySlot: ModelSlot | null = null;
  private shadowSlot: ModelSlot | null = null;
  private loadError: string | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private swapping = false;
  private readonly pressureListeners: ((high: boolean) => void)[] = [];
  private pressured = false;

  constructor(
    @Inject(INFERENCE_CONFIG) private readonly config: InferenceConfig,
    @Inject(LOGGER) private readonly log: Logger,
    private readonly metrics: ThoraxMetrics,
    health: HealthRegistry,
  ) {
    health.addReadiness('model', () => {
      if (!this.primarySlot) return unhealthy(this.loadError ?? 'model not loaded and warmed up yet');
      return this.primarySlot.pool.alive > 0 ? healthy : unhealthy('every inference worker is restarting');
    });
  }

  get primary(): ModelSlot {
    if (!this.primarySlot) throw new Error('model not loaded');
    return this.primarySlot;
  }

  get shadow(): ModelSlot | null {
    return this.shadowSlot;
  }

  /** The slot that answers for this image id: the canary for its hash share, else the primary. */
  route(id: string): ModelSlot {
    const canary = this.canarySlot;
    if (canary && canaryBucket(id) < this.config.INFERENCE_CANARY_PERCENT) return canary;
    return this.primary;
  }

  /** Called with true when the batchers are too deep (pause input) and false when drained. */
  onPressure(listener: (high: boolean) => void): void {
    this.pressureListeners.push(listener);
  }

  async onModuleInit(): Promise<void> {
    const c = this.config;
    try {
      this.primarySlot = await this.load('primary', c.INFERENCE_MODEL_VERSION || undefined);
      if (c.INFERENCE_CANARY_VERSION) this.canarySlot = await this.load('canary', c.INFERENCE_CANARY_VERSION);
      if (c.INFERENCE_SHADOW_VERSION) this.shadowSlot = await this.load('shadow', c.INFERENCE_SHADOW_VERSION);
    } catch (error) {
      this.loadError = (error as Error).message;
      this.log.error({ err: error, modelDir: c.MODEL_DIR }, 'model could not be loaded');
      throw error;
    }
    if (!c.INFERENCE_MODEL_VERSION && c.INFERENCE_MODEL_POLL_MS > 0) {
      this.pollTimer = setInterval(() => void this.checkForNewVersion(), c.INFERENCE_MODEL_POLL_MS);
      this.pollTimer.unref();
    }
  }

  /** Loads the highest version if it differs from the primary; keeps the old one on failure. */
  async checkForNewVersion(): Promise<'swapped' | 'unchanged' | 'failed'> {
    if (this.swapping || !this.primarySlot) return 'unchanged';
    this.swapping = true;
    try {
      const latest = (await listModelVersions(this.config.MODEL_DIR)).at(-1);
      if (!latest || latest === this.primarySlot.directory) return 'unchanged';
      const next = await this.load('primary', latest);
      const previous = this.primarySlot;
      this.primarySlot = next;
      this.log.info({ from: previous.version, to: next.version }, 'primary model swapped');
      // Same name, version and provider (a re-published version): the series is already right.
      const was = { model: previous.name, version: previous.version, provider: previous.pool.provider };
      if (was.model !== next.name || was.version !== next.version || was.provider !== next.pool.provider) {
        this.metrics.modelInfo.remove(was);
      }
      void previous.drainAndClose();
      return 'swapped';
    } catch (error) {
      this.log.error({ err: error }, 'new model version failed to load; keeping the current one');
      return 'failed';
    } finally {
      this.swapping = false;
    }
  }

  private async load(role: ModelSlot['role'], version?: string): Promise<ModelSlot> {
    const c = this.config;
    const artifact = await loadModelArtifact(c.MODEL_DIR, version, c.INFERENCE_MODEL_FILE);
    const pool = await InferencePool.start(artifact, {
      workers: c.INFERENCE_WORKERS,
      intraOpThreads: c.INFERENCE_INTRA_OP_THREADS,
      providers: c.INFERENCE_PROVIDERS,
      onWorkerExit: (e) =>
        this.log.error({ role, worker: e.worker, code: e.code }, 'inference worker died; replacing it'),
      onProviderEvent: (e) =>
        e.outcome === 'active'
          ? this.log.debug({ role, worker: e.worker, provider: e.provider }, 'execution provider active')
          : this.log.warn(
              { role, worker: e.worker, provider: e.provider, reason: e.reason },
              `execution provider ${e.outcome}; trying the next`,
            ),
    });
    const { name, version: v } = artifact.metadata;
    const labels = { model: name, version: v };
    const slot = new ModelSlot(role, pool, {
      maxBatch: c.INFERENCE_MAX_BATCH,
      maxDelayMs: c.INFERENCE_MAX_DELAY_MS,
      highWatermark: c.INFERENCE_QUEUE_HIGH,
      lowWatermark: c.INFERENCE_QUEUE_LOW,
      onPressure: () => this.updatePressure(),
      onDepth: (depth) => this.metrics.queueDepth.set({ stage: 'inference', ...labels }, depth),
      onBatch: (size, result) => {
        this.metrics.inferenceBatchSize.observe(labels, size);
        this.metrics.inferenceDuration.observe({ ...labels, provider: pool.provider }, result.runMs / 1000);
      },
    });
    const started = Date.now();
    try {
      await slot.warmUp(c.INFERENCE_MAX_BATCH);
    } catch (error) {
      await pool.close();
      throw error;
    }
    this.metrics.modelInfo.set({ ...labels, provider: pool.provider }, 1);
    this.log.info(
      {
        role,
        model: name,
        modelVersion: v,
        sha256: artifact.sha256,
        provider: pool.provider,
        workers: pool.size,
        path: artifact.path,
        labels: artifact.metadata.labels.length,
        warmupMs: Date.now() - started,
      },
      'model loaded and warmed up',
    );
    const { provenance } = artifact.metadata;
    if (!provenance.clinical)
      this.log.warn(
        { role, model: name, modelVersion: v, trainingData: provenance.data, dataset: provenance.dataset, clinical: false },
        `model is not for clinical use: ${provenance.note}`,
      );
    return slot;
  }

  private updatePressure(): void {
    const high = [this.primarySlot, this.canarySlot, this.shadowSlot].some((s) => s?.pressured);
    if (high === this.pressured) return;
    this.pressured = high;
    this.log.info({ high }, high ? 'batcher above high watermark: pausing input' : 'batcher drained: resuming input');
    for (const listener of this.pressureListeners) listener(high);
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    await Promise.all([this.primarySlot, this.canarySlot, this.shadowSlot].map((s) => s?.drainAndClose()));
  }
}

/** 0..99 from the image id: the same id always takes the same route. */
export function canaryBucket(id: string): number {
  return createHash('sha256').update(id).digest().readUInt32BE(0) % 100;
}
