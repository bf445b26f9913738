import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { HEADERS, studyInfoFromRef } from '@thorax/contracts';
import { type FailureContext, type IncomingRecord, KafkaConnection, type RecordHandler, recordId } from '@thorax/kafka';
import { type Logger, ThoraxMetrics } from '@thorax/observability';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { StudyIntakeService } from './study-intake.service';

/** Consumes thorax.studies.v1 (all partitions) and admits each record. */
@Injectable()
export class StudiesConsumer implements OnApplicationBootstrap, RecordHandler {
  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    private readonly kafka: KafkaConnection,
    private readonly intake: StudyIntakeService,
    private readonly metrics: ThoraxMetrics,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.kafka
      .createConsumer(
        {
          groupId: this.config.INGEST_GROUP_ID,
          topic: this.config.TOPIC_STUDIES,
          stage: 'ingest',
          findingsTopic: this.config.TOPIC_FINDINGS,
          partitionsConsumedConcurrently: this.config.INGEST_PARTITIONS_CONCURRENCY,
          maxInFlightPerPartition: this.config.INGEST_IN_FLIGHT_PER_PARTITION,
        },
        this,
      )
      .start();
  }

  async handle(record: IncomingRecord, log: Logger): Promise<void> {
    const accepted = await this.metrics.time('admit', () => this.intake.admit(record, receivedAt(record)));
    log.debug({ contentType: accepted.contentType, bytes: accepted.sizeBytes }, 'study admitted');
  }

  describe(record: IncomingRecord): FailureContext {
    return {
      id: recordId(record),
      study: studyInfoFromRef(this.intake.studyOf(record)),
      receivedAt: receivedAt(record),
    };
  }
}

/** Receipt time: an upstream edge's stamp when present, else the record's broker timestamp. */
function receivedAt(record: IncomingRecord): Date {
  const stamped = record.headers[HEADERS.receivedAt];
  const parsed = stamped ? new Date(stamped) : null;
  if (parsed && !Number.isNaN(parsed.getTime())) return parsed;
  return Number.isFinite(record.timestamp) && record.timestamp > 0 ? new Date(record.timestamp) : new Date();
}
