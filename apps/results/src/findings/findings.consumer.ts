import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { decodeFindingsEvent, type FindingsEvent, FindingsEventInvalidError, ThoraxError } from '@thorax/contracts';
import { CONSUMERS, type ConsumerPort, type Delivery, type MessageHandler, type RetryPolicy } from '@thorax/kafka';
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
export class FindingsConsumer implements OnApplicationBootstrap, MessageHandler<FindingsEvent> {
  constructor(
    @Inject(RESULTS_CONFIG) private readonly config: ResultsConfig,
    @Inject(CONSUMERS) private readonly consumers: ConsumerPort,
    private readonly recorder: FindingsRecorder,
    private readonly fhirTopic: FhirTopicPublisher,
  ) {}

  onApplicationBootstrap(): void {
    this.consumers.consume(
      {
        groupId: this.config.RESULTS_GROUP_ID,
        topic: this.config.TOPIC_FINDINGS,
        stage: 'results',
        findingsTopic: null,
        decode: parseFindings,
        retry: STORE_RETRY_POLICY,
        partitionsConsumedConcurrently: this.config.RESULTS_PARTITIONS_CONCURRENCY,
      },
      this,
    );
  }

  async handle({ message: event, log }: Delivery<FindingsEvent>): Promise<void> {
    const outcome = await this.recorder.record(event);
    if (outcome.kind === 'duplicate') log.debug({ status: event.status }, 'findings already stored');
    else log.debug({ status: event.status, seq: outcome.record.seq.toString(), outcome: outcome.kind }, 'findings stored');
    // Also after a duplicate: a bundle whose publishing failed last time goes out now.
    if (this.fhirTopic.enabled && event.study.studyUid) {
      const version = await this.fhirTopic.publishStudy(event.study.studyUid);
      if (version !== null) log.debug({ fhirVersion: version }, 'study FHIR bundle published');
    }
  }
}

/** A record value as an event, validated against the thorax.findings.v1 schema. */
export function parseFindings(value: Buffer): FindingsEvent {
  try {
    return decodeFindingsEvent(value);
  } catch (error) {
    if (error instanceof FindingsEventInvalidError) {
      throw new ThoraxError('INVALID_MESSAGE', error.message, { stage: 'results', cause: error });
    }
    throw error;
  }
}
