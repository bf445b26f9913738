import { Inject, Injectable, type OnApplicationBootstrap, Optional } from '@nestjs/common';
import { decodeFindingsEvent, type FindingsEvent, FindingsEventInvalidError, ThoraxError } from '@thorax/contracts';
import { type BatchHandler, CONSUMERS, type ConsumerPort, type Delivery, ITEM_OK, type ItemResult, type RetryPolicy } from '@thorax/kafka';
import { LOGGER, type Logger } from '@thorax/observability';
import { RESULTS_CONFIG, type ResultsConfig } from '../config';
import { FhirTopicPublisher } from '../fhir/fhir-topic.publisher';
import { classifyStoreError } from '../store/store-errors';
import { ClaimCheckRetention } from './claim-check-retention';
import { FindingsRecorder } from './findings-recorder.service';

/**
 * Retries of a record whose batch failed (store away, FHIR bundle not acknowledged): alone, about
 * 18 s of backoff in all, inside the consumer session timeout, then handed back to Kafka for
 * redelivery (a store outage never dead-letters a valid event).
 */
export const STORE_RETRY_POLICY: RetryPolicy = { maxAttempts: 8, initialBackoffMs: 250, maxBackoffMs: 5000 };

/**
 * Consumes thorax.findings.v1 (all partitions) into the results store in batches: the events of a
 * fetch are stored in one transaction (FindingsWriter), then the FHIR bundles of the studies they
 * touched go out in one request. An offset is committed only after its row is durable (and, with
 * RESULTS_FHIR_TOPIC set and at-least-once delivery, after its study's bundle is acknowledged;
 * under exactly-once delivery the store is the outbox FhirOutboxRelay publishes from). An event that does not
 * decode, or that the store rejects, is dead-lettered to thorax.findings.v1.dlq on its own (no
 * error event is re-emitted: this is the last stage); its batch mates are stored.
 */
@Injectable()
export class FindingsConsumer implements OnApplicationBootstrap, BatchHandler<FindingsEvent> {
  constructor(
    @Inject(RESULTS_CONFIG) private readonly config: ResultsConfig,
    @Inject(CONSUMERS) private readonly consumers: ConsumerPort,
    private readonly recorder: FindingsRecorder,
    private readonly fhirTopic: FhirTopicPublisher,
    @Inject(LOGGER) private readonly log: Logger,
    // Typed without `| null`: the union would erase the type Nest injects by.
    @Optional() private readonly retention?: ClaimCheckRetention,
  ) {}

  onApplicationBootstrap(): void {
    this.consumers.consumeBatches(
      {
        groupId: this.config.RESULTS_GROUP_ID,
        topic: this.config.TOPIC_FINDINGS,
        stage: 'results',
        findingsTopic: null,
        decode: parseFindings,
        retry: STORE_RETRY_POLICY,
        partitionsConsumedConcurrently: this.config.RESULTS_PARTITIONS_CONCURRENCY,
        maxBatchRecords: this.config.RESULTS_BATCH_MAX_RECORDS,
      },
      this,
    );
  }

  async handleBatch(deliveries: readonly Delivery<FindingsEvent>[]): Promise<readonly ItemResult[]> {
    const events = deliveries.map((d) => d.message);
    const outcomes = await this.recorder.record(
      events,
      events.map((event) => receivedJson.get(event)),
    );
    const results: ItemResult[] = outcomes.map((outcome) =>
      outcome.kind === 'rejected' ? { ok: false, error: classifyStoreError(outcome.error) } : ITEM_OK,
    );
    const counts = { stored: 0, replaced: 0, duplicate: 0, rejected: 0 };
    for (const outcome of outcomes) counts[outcome.kind] += 1;
    if (this.log.isLevelEnabled('debug')) {
      // One line per record too, bound to its topic, partition, offset, id and trace id, as in
      // every other stage (a rejected record is logged by the consumer when it is dead-lettered).
      outcomes.forEach((outcome, i) => {
        const delivery = deliveries[i];
        if (!delivery || outcome.kind === 'rejected') return;
        delivery.log.debug({ status: delivery.message.status, outcome: outcome.kind }, outcome.kind === 'duplicate' ? 'findings already stored' : 'findings stored');
      });
      this.log.debug({ records: deliveries.length, ...counts }, 'findings batch stored');
    }
    if (this.fhirTopic.publishesOnStore) {
      // Also after duplicates: a bundle whose publishing failed last time goes out now.
      // (With study grouping, StudySettler publishes each study once it has been quiet; under
      // exactly-once delivery, FhirOutboxRelay publishes every version from the store.)
      const studies = events.filter((event, i) => results[i]?.ok && event.study.studyUid).map((event) => event.study.studyUid as string);
      const published = await this.fhirTopic.publishStudies(studies);
      if (published.length > 0) this.log.debug({ bundles: published.length }, 'study FHIR bundles published');
    }
    if (this.retention) {
      // The claim-checked inputs of stored rows (also duplicates: a delete may have failed before).
      const released = await this.retention.release(deliveries.filter((_, i) => results[i]?.ok));
      if (released > 0 && this.log.isLevelEnabled('debug')) this.log.debug({ objects: released }, 'claim-checked inputs deleted');
    }
    return results;
  }
}

/**
 * The JSON each event was decoded and validated from, for the store to keep as it is instead of
 * serialising the event again (an event is never changed after decoding; one that did not come
 * through parseFindings, e.g. handed over in process, is serialised).
 */
const receivedJson = new WeakMap<FindingsEvent, string>();

/** A record value as an event, validated against the thorax.findings.v1 schema. */
export function parseFindings(value: Buffer): FindingsEvent {
  try {
    const event = decodeFindingsEvent(value);
    receivedJson.set(event, value.toString('utf8'));
    return event;
  } catch (error) {
    if (error instanceof FindingsEventInvalidError) {
      throw new ThoraxError('INVALID_MESSAGE', error.message, { stage: 'results', cause: error });
    }
    throw error;
  }
}
