import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit, Optional } from '@nestjs/common';
import { compareModelVersions, InferencePool, listModelVersions, loadModelArtifact } from '@thorax/model-runtime';
import { HealthRegistry, healthy, LOGGER, type Logger, ThoraxMetrics, unhealthy } from '@thorax/observability';
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { Counter, Gauge } from 'prom-client';
import { type ModelSelection, sameSelection, selectionFromConfig } from '../admin/model-selection';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';
import { ModelSlot, warmUpBatchSizes } from './model-slot';

/**
 * Where the model selection comes from besides the INFERENCE_* defaults: the admin API's control
 * topic (admin/model-control.service.ts). `initial` is awaited before the first load; `onChange`
 * listeners get every later selection, in order.
 */
export interface ModelSelectionSource {
  initial(defaults: ModelSelection): Promise<ModelSelection>;
  onChange(listener: (selection: ModelSelection) => Promise<void>): void;
}

export const MODEL_SELECTION_SOURCE = Symbol('thorax.inference.model-selection-source');

/**
 * Serves the model versions found in MODEL_DIR: a primary (pinned, or the highest version, hot
 * swapped when a newer one appears: loaded in fresh workers, warmed up at every batch size, then
 * swapped in atomically; a failed load keeps the old one), an optional canary that takes a share
 * of images by a hash of their id, and an optional shadow that sees every image but whose findings
 * are never the primary result. Labels, thresholds and input size come from each ONNX file.
 *
 * Hot swap only ever moves forward: a version that sorts below the one served (its newer
 * directory was deleted) is never loaded automatically; the loaded model keeps serving and the
 * missing directory is logged and exposed as `thorax_model_directory_missing`. Going back is an
 * explicit pin (INFERENCE_MODEL_VERSION).
 */
@Injectable()
export class ModelService implements OnModuleInit, OnApplicationShutdown {
  private primarySlot: ModelSlot | null = null;
  private canarySlot: ModelSlot | null = null;
  private shadowSlot: ModelSlot | null = null;
  private loadError: string | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private swapping = false;
  /** The selection served now (starts as the INFERENCE_* defaults; the admin API changes it). */
  private selected: ModelSelection;
  /** Serialises selection changes. */
  private changes: Promise<unknown> = Promise.resolve();
  private readonly pressureListeners: ((high: boolean) => void)[] = [];
  private pressured = false;
  /** Model files of loaded slots that were found missing at the last poll. */
  private readonly missing = new Set<string>();
  private readonly directoryMissing: Gauge<'role' | 'model' | 'version'>;
  private readonly batchTimeouts: Counter<'model' | 'version'>;
  private readonly workerRestarts: Counter<'model' | 'version' | 'reason'>;

  constructor(
    @Inject(INFERENCE_CONFIG) private readonly config: InferenceConfig,
    @Inject(LOGGER) private readonly log: Logger,
    private readonly metrics: ThoraxMetrics,
    health: HealthRegistry,
    @Optional() @Inject(MODEL_SELECTION_SOURCE) private readonly selectionSource: ModelSelectionSource | null = null,
  ) {
    this.selected = selectionFromConfig(config);
    this.directoryMissing = new Gauge({
      name: 'thorax_model_directory_missing',
      help: 'Whether the file of a loaded model version has disappeared from MODEL_DIR (it keeps serving from memory)',
      labelNames: ['role', 'model', 'version'],
      registers: [metrics.registry],
    });
    this.batchTimeouts = new Counter({
      name: 'thorax_inference_batch_timeouts_total',
      help: 'Inference batches that ran past INFERENCE_BATCH_TIMEOUT_MS (their worker was replaced)',
      labelNames: ['model', 'version'],
      registers: [metrics.registry],
    });
    this.workerRestarts = new Counter({
      name: 'thorax_inference_worker_restarts_total',
      help: 'Inference workers replaced, by reason (exit: died; timeout: retired after a batch timeout)',
      labelNames: ['model', 'version', 'reason'],
      registers: [metrics.registry],
    });
    // Threads stuck in a run past the batch timeout cannot be stopped from JavaScript; once
    // there are as many as workers, only a restart frees the cores they spin.
    health.addLiveness('inference-workers', () => {
      const stuck = [this.primarySlot, this.canarySlot, this.shadowSlot].find((s) => s && s.pool.stuck >= s.pool.size);
      return stuck
        ? unhealthy(`${stuck.pool.stuck} ${stuck.role} inference worker(s) stuck in a run past the batch timeout`)
        : healthy;
    });
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
    if (canary && canaryBucket(id) < (this.selected.canary?.percent ?? 0)) return canary;
    return this.primary;
  }

  /** Called with true when the batchers are too deep (pause input) and false when drained. */
  onPressure(listener: (high: boolean) => void): void {
    this.pressureListeners.push(listener);
  }

  async onModuleInit(): Promise<void> {
    const c = this.config;
    const defaults = this.selected;
    if (this.selectionSource) {
      const wanted = await this.selectionSource.initial(defaults);
      if (!sameSelection(wanted, defaults)) {
        try {
          await this.loadSelection(wanted);
        } catch (error) {
          this.log.error(
            { err: error, selection: wanted, defaults },
            'the model selection of the control topic failed to load; serving the INFERENCE_* defaults',
          );
        }
      }
    }
    try {
      if (!this.primarySlot) await this.loadSelection(defaults);
    } catch (error) {
      this.loadError = (error as Error).message;
      this.log.error({ err: error, modelDir: c.MODEL_DIR }, 'model could not be loaded');
      throw error;
    }
    this.selectionSource?.onChange((next) => this.applySelection(next).then(() => undefined));
    if (c.INFERENCE_MODEL_POLL_MS > 0) {
      this.pollTimer = setInterval(() => void this.poll(), c.INFERENCE_MODEL_POLL_MS);
      this.pollTimer.unref();
    }
  }

  /** One MODEL_DIR check: are the served files still there, and (unpinned) is there a newer version? */
  async poll(): Promise<'swapped' | 'unchanged' | 'failed'> {
    await this.checkModelFiles();
    return this.selected.primary ? 'unchanged' : this.checkForNewVersion();
  }

  /**
   * Loads the highest version if it sorts above the primary's (the order that picks the highest
   * at start); keeps the current one when it fails to load. A lower highest version (the served
   * directory was deleted) is never swapped in: that would be a silent rollback.
   */
  async checkForNewVersion(): Promise<'swapped' | 'unchanged' | 'failed'> {
    if (this.swapping || !this.primarySlot) return 'unchanged';
    this.swapping = true;
    try {
      const latest = (await listModelVersions(this.config.MODEL_DIR)).at(-1);
      if (!latest || compareModelVersions(latest, this.primarySlot.directory) <= 0) return 'unchanged';
      const next = await this.load('primary', latest);
      const previous = this.primarySlot;
      this.primarySlot = next;
      this.log.info({ from: previous.version, to: next.version }, 'primary model swapped');
      // Same name, version and provider (a re-published version): the series is already right.
      const was = { model: previous.name, version: previous.version, provider: previous.pool.provider };
      if (was.model !== next.name || was.version !== next.version || was.provider !== next.pool.provider) {
        this.metrics.modelInfo.remove(was);
      }
      this.missing.delete(previous.pool.modelPath);
      this.directoryMissing.remove({ role: 'primary', model: previous.name, version: previous.version });
      void previous.drainAndClose();
      return 'swapped';
    } catch (error) {
      this.log.error({ err: error }, 'new model version failed to load; keeping the current one');
      return 'failed';
    } finally {
      this.swapping = false;
    }
  }

  /**
   * Checks that the file of every loaded slot is still in MODEL_DIR. A missing one keeps serving
   * (it is in memory); it is logged once and flagged in thorax_model_directory_missing.
   */
  async checkModelFiles(): Promise<string[]> {
    const gone: string[] = [];
    for (const slot of [this.primarySlot, this.canarySlot, this.shadowSlot]) {
      if (!slot) continue;
      const file = slot.pool.modelPath;
      const labels = { role: slot.role, model: slot.name, version: slot.version };
      const present = await stat(file).then(
        (s) => s.isFile(),
        () => false,
      );
      this.directoryMissing.set(labels, present ? 0 : 1);
      if (!present) gone.push(slot.directory);
      if (!present && !this.missing.has(file)) {
        this.missing.add(file);
        this.log.warn(
          { role: slot.role, modelVersion: slot.version, directory: slot.directory, path: file },
          'the served model version has disappeared from MODEL_DIR; it keeps serving from memory and is not ' +
            'rolled back: pin INFERENCE_MODEL_VERSION to serve another version',
        );
      } else if (present && this.missing.delete(file)) {
        this.log.info({ role: slot.role, modelVersion: slot.version, path: file }, 'served model file is back');
      }
    }
    return gone;
  }

  private async load(role: ModelSlot['role'], version?: string): Promise<ModelSlot> {
    const c = this.config;
    const artifact = await loadModelArtifact(c.MODEL_DIR, version, c.INFERENCE_MODEL_FILE);
    const { name, version: v } = artifact.metadata;
    const labels = { model: name, version: v };
    // Series from 0 at load, so an alert's increase() counts the first timeout or death too.
    this.batchTimeouts.inc(labels, 0);
    for (const reason of ['exit', 'timeout']) this.workerRestarts.inc({ ...labels, reason }, 0);
    const reportedFallbacks = new Set<string>();
    const pool = await InferencePool.start(artifact, {
      workers: c.INFERENCE_WORKERS,
      intraOpThreads: c.INFERENCE_INTRA_OP_THREADS,
      providers: c.INFERENCE_PROVIDERS,
      warmUpBatchSizes: warmUpBatchSizes(c.INFERENCE_MAX_BATCH),
      batchTimeoutMs: c.INFERENCE_BATCH_TIMEOUT_MS,
      // The shadow's findings are never reviewed: its maps would be fetched for nothing.
      maps: c.INFERENCE_REVIEW_IMAGES && role !== 'shadow',
      onWorkerExit: (e) => {
        this.workerRestarts.inc({ ...labels, reason: 'exit' });
        this.log.error({ role, worker: e.worker, code: e.code }, 'inference worker died; replacing it');
      },
      onBatchTimeout: (e) => {
        this.batchTimeouts.inc(labels);
        this.workerRestarts.inc({ ...labels, reason: 'timeout' });
        this.log.error(
          { role, worker: e.worker, images: e.images, timeoutMs: e.timeoutMs },
          'inference batch timed out; retiring its worker and retrying its images',
        );
      },
      onWorkerReady: (e) => {
        if (e.replacement) {
          this.log.warn(
            { role, worker: e.worker, warmUpMs: e.warmUpMs, batchSizes: e.batchSizes },
            'replacement inference worker warmed up; it takes batches now',
          );
        }
      },
      onProviderEvent: (e) => {
        if (e.outcome === 'active') {
          this.log.debug({ role, worker: e.worker, provider: e.provider }, 'execution provider active');
          return;
        }
        // Every worker meets the same fallback: one line per provider and reason for this load.
        const key = `${e.provider}\n${e.outcome}\n${e.reason ?? ''}`;
        if (reportedFallbacks.has(key)) return;
        reportedFallbacks.add(key);
        this.log.warn(
          { role, provider: e.provider, outcome: e.outcome, reason: e.reason, providers: c.INFERENCE_PROVIDERS },
          `execution provider ${e.provider} ${e.outcome === 'failed' ? 'did not load' : 'is not offered'}: ` +
            `${e.reason ?? 'no reason given'}; trying the next one`,
        );
      },
    });
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
        batchTimeoutMs: pool.batchTimeoutMs,
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

  /** The selection served now. */
  get selection(): ModelSelection {
    return this.selected;
  }

  /** The loaded slots, for the admin API. */
  get slots(): { primary: ModelSlot | null; canary: ModelSlot | null; shadow: ModelSlot | null } {
    return { primary: this.primarySlot, canary: this.canarySlot, shadow: this.shadowSlot };
  }

  /**
   * Serves `next`: every version that changes is loaded and warmed up first; only when all have
   * loaded are they swapped in together. A failed load closes what was loaded for it and throws,
   * and the versions served before keep serving.
   */
  applySelection(next: ModelSelection): Promise<'applied' | 'unchanged'> {
    const run = this.changes.then(async () => {
      if (this.primarySlot && sameSelection(next, this.selected)) return 'unchanged' as const;
      await this.loadSelection(next);
      return 'applied' as const;
    });
    this.changes = run.catch(() => undefined);
    return run;
  }

  private async loadSelection(next: ModelSelection): Promise<void> {
    while (this.swapping) await new Promise((r) => setTimeout(r, 20));
    this.swapping = true;
    const loaded: ModelSlot[] = [];
    try {
      const want = async (role: ModelSlot['role'], current: ModelSlot | null, version: string | null): Promise<ModelSlot | null> => {
        if (version === null) return null;
        if (current && current.directory === version) return current;
        const slot = await this.load(role, version);
        loaded.push(slot);
        return slot;
      };
      let primary: ModelSlot | null;
      if (next.primary !== null) primary = await want('primary', this.primarySlot, next.primary);
      else if (!this.primarySlot) primary = await this.load('primary').then((slot) => (loaded.push(slot), slot));
      else {
        // Unpinned: the highest version, forward only (as the MODEL_DIR poll does).
        const latest = (await listModelVersions(this.config.MODEL_DIR).catch(() => [])).at(-1);
        const newer = latest !== undefined && compareModelVersions(latest, this.primarySlot.directory) > 0;
        primary = newer ? await want('primary', this.primarySlot, latest) : this.primarySlot;
      }
      const canary = await want('canary', this.canarySlot, next.canary?.version ?? null);
      const shadow = await want('shadow', this.shadowSlot, next.shadow);
      const before = [this.primarySlot, this.canarySlot, this.shadowSlot];
      this.primarySlot = primary;
      this.canarySlot = canary;
      this.shadowSlot = shadow;
      this.selected = next;
      const kept = new Set([primary, canary, shadow]);
      for (const old of before) {
        if (!old || kept.has(old)) continue;
        const labels = { model: old.name, version: old.version, provider: old.pool.provider };
        const stillServed = [primary, canary, shadow].some((s) => s && s.name === labels.model && s.version === labels.version && s.pool.provider === labels.provider);
        if (!stillServed) this.metrics.modelInfo.remove(labels);
        this.missing.delete(old.pool.modelPath);
        this.directoryMissing.remove({ role: old.role, model: old.name, version: old.version });
        void old.drainAndClose();
      }
      this.loadError = null;
      this.log.info(
        {
          primary: primary?.version ?? null,
          canary: canary ? { version: canary.version, percent: next.canary?.percent ?? 0 } : null,
          shadow: shadow?.version ?? null,
          pinned: next.primary,
        },
        'model selection served',
      );
    } catch (error) {
      await Promise.all(loaded.map((s) => s.drainAndClose().catch(() => undefined)));
      throw error;
    } finally {
      this.swapping = false;
    }
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
