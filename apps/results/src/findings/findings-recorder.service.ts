import { Inject, Injectable } from '@nestjs/common';
import type { FindingsEvent } from '@thorax/contracts';
import { ThoraxMetrics } from '@thorax/observability';
import { FINDINGS_WRITER, type FindingsWriter, type StoreOutcome } from '../store/results-store.port';
import { classifyStoreError } from '../store/store-errors';

/** Stores findings events durably, in batches, and observes the end-to-end latency of new results. */
@Injectable()
export class FindingsRecorder {
  constructor(
    @Inject(FINDINGS_WRITER) private readonly writer: FindingsWriter,
    private readonly metrics: ThoraxMetrics,
  ) {}

  /**
   * One outcome per event, in order, once the rows are durable. An event the store rejects has a
   * `rejected` outcome (its batch mates are stored); a store that is away throws a classified
   * ThoraxError for the whole batch. `eventJson`: the events as received (FindingsWriter.store).
   */
  async record(events: readonly FindingsEvent[], eventJson?: readonly (string | undefined)[]): Promise<StoreOutcome[]> {
    let outcomes: StoreOutcome[];
    try {
      outcomes = await this.metrics.time('persist', () => this.writer.store(events, eventJson));
    } catch (error) {
      throw classifyStoreError(error);
    }
    const now = Date.now();
    outcomes.forEach((outcome, i) => {
      const event = events[i];
      if (!event || (outcome.kind !== 'stored' && outcome.kind !== 'replaced')) return;
      // Received by ingest → stored here; a redelivery is not a second arrival.
      const seconds = (now - Date.parse(event.timing.receivedAt)) / 1000;
      if (Number.isFinite(seconds) && seconds >= 0) this.metrics.endToEndLatency.observe(seconds);
    });
    return outcomes;
  }
}
