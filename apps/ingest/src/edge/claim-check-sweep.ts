import { type BeforeApplicationShutdown, Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { CLAIM_CHECK_PREFIX, type ObjectStore } from '@thorax/object-store';
import { LOGGER, type Logger } from '@thorax/observability';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { OBJECT_STORE } from './object-store.provider';

/**
 * Backstop of the claim-check retention (docs/object-store.md): results deletes an input once its
 * row is stored; what is left (an image refused after it was stored, a delete that failed, an
 * upload whose record was never written) is deleted here once it is older than
 * OBJECT_STORE_RETENTION_HOURS, every INGEST_OBJECT_SWEEP_INTERVAL_MS. Every ingest replica sweeps;
 * deleting a deleted object is not an error. 0 hours switches it off.
 */
@Injectable()
export class ClaimCheckSweep implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;

  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    @Inject(OBJECT_STORE) private readonly store: ObjectStore,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.OBJECT_STORE_RETENTION_HOURS <= 0) return;
    this.timer = setInterval(() => void this.sweepOnce(), this.config.INGEST_OBJECT_SWEEP_INTERVAL_MS);
    this.timer.unref();
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** Deletes claim-checked inputs older than the retention; resolves with how many. Never throws. */
  sweepOnce(now = Date.now()): Promise<number> {
    this.running ??= this.sweep(now).finally(() => (this.running = null));
    return this.running;
  }

  private async sweep(now: number): Promise<number> {
    const cutoff = now - this.config.OBJECT_STORE_RETENTION_HOURS * 3_600_000;
    let deleted = 0;
    try {
      for await (const object of this.store.list(CLAIM_CHECK_PREFIX)) {
        if (object.lastModified.getTime() >= cutoff) continue;
        await this.store.delete(object.uri);
        deleted += 1;
      }
      if (deleted > 0) this.log.info({ deleted, retentionHours: this.config.OBJECT_STORE_RETENTION_HOURS }, 'claim-checked inputs past retention deleted');
    } catch (error) {
      this.log.warn({ err: error, deleted }, 'claim-check sweep failed; next interval retries');
    }
    return deleted;
  }
}
