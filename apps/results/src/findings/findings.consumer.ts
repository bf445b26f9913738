import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { decodeFindingsEvent, type FindingsEvent, FindingsEventInvalidError, ThoraxError } from '@thorax/contracts';
import { type FailureContext, type IncomingRecord, KafkaConnection, type RecordHandler, type RetryPolicy } from '@thorax/kafka';
import type { Logger } from '@thorax/observability';
import { RESULTS_CONFIG, type ResultsConfig } from '../config';
import { FhirTopicPublisher } from '../fhir/fhir-topic.publisher';
import { FindingsRecorder } from './findings-recorder.service';

/**
 * Retries of a store that is away (connection lost, server restarting): about 18 s of backoff in
 * all, inside the consumer session timeout, before the record is dead-lettered.
 */
export const STORE_RETRY_POLICY: RetryPolicy = { maxAttempts: 8, initialBackoffMs: 250, maxBackoffMs: 5000 };

/**
 * Consumes thorax.findings.v1 (all partitions) into the results store. The offset is committed
 * only after the row is durable (and, with RESULTS_FHIR_TOPIC set, after the study's new FHIR
 * bundle is acknowledged); an invalid event goes to thorax.findings.v1.dlq (no error event is
 * re-emitted: this is the last stage).
 */
@Injectable()
export class FindingsConsumer implements OnApplicationBootstrap, RecordHandler {
  constructor(
    @Inject(RESULTS_CONFIG) private readonly config: ResultsConfig,
    private readonly kafka: KafkaConnection,
    private readonly recorder: FindingsRecorder,
    private readonly fhirTopic: FhirTopicPublisher,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.kafka
      .createConsumer(
        {
          groupId: this.config.RESULTS_GROUP_ID,
          topic: this.config.TOPIC_FINDINGS,
          stage: 'results',
          findingsTopic: null,
          retry: STORE_RETRY_POLICY,
          partitionsConsumedConcurrently: this.config.RESULTS_PARTITIONS_CONCURRENCY,
        },
        this,
      )
      .start();
  }

  async handle(record: IncomingRecord, log: Logger): Promise<void> {
    const event = parseFindings(record);
    const outcome = await this.recorder.record(event);
    if (outcome.kind === 'duplicate') log.debug({ status: event.status }, 'findings already stored');
    else log.debug({ status: event.status, seq: outcome.record.seq.toString(), outcome: outcome.kind }, 'findings stored');
    // Also after a duplicate: a bundle whose publishing failed last time goes out now.
    if (this.fhirTopic.enabled && event.study.studyUid) {
      const version = await this.fhirTopic.publishStudy(event.study.studyUid);
      if (version !== null) log.debug({ fhirVersion: version }, 'study FHIR bundle published');
    }
  }

  describe(record: IncomingRecord): FailureContext {
    return { id: record.key || `unkeyed:${record.topic}:${record.partition}:${record.offset}` };
  }
}

/** The record's event, validated against the thorax.findings.v1 schema. */
export function parseFindings(record: IncomingRecord): FindingsEvent {
  try {
    return decodeFindingsEvent(record.value);
  } catch (error) {
    if (error instanceof FindingsEventInvalidError) {
      throw new ThoraxError('INVALID_MESSAGE', error.message, { stage: 'results', cause: error });
    }
    throw error;
  }
}
