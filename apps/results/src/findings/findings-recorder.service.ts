import { Inject, Injectable } from '@nestjs/common';
import type { FindingsEvent } from '@thorax/contracts';
import { ThoraxMetrics } from '@thorax/observability';
import { FINDINGS_REPOSITORY, type FindingsRepository, type StoreOutcome } from '../store/findings.repository';
import { classifyStoreError } from '../store/store-errors';

/** Stores a findings event durably and observes the end-to-end latency of new results. */
@Injectable()
export class FindingsRecorder {
  constructor(
    @Inject(FINDINGS_REPOSITORY) private readonly repository: FindingsRepository,
    private readonly metrics: ThoraxMetrics,
  ) {}

  /** Resolves once the row is durable; throws a classified ThoraxError otherwise. */
  async record(event: FindingsEvent): Promise<StoreOutcome> {
    let outcome: StoreOutcome;
    try {
      outcome = await this.metrics.time('persist', () => this.repository.store(event));
    } catch (error) {
      throw classifyStoreError(error);
    }
    if (outcome.kind !== 'duplicate') {
      // Received by ingest → stored here; a redelivery is not a second arrival.
      const seconds = (Date.now() - Date.parse(event.timing.receivedAt)) / 1000;
      if (Number.isFinite(seconds) && seconds >= 0) this.metrics.endToEndLatency.observe(seconds);
    }
    return outcome;
  }
}
