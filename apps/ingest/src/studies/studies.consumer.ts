import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { HEADERS, studyInfoFromRef } from '@thorax/contracts';
import {
  CONSUMERS,
  type ConsumerPort,
  type Delivery,
  type FailureContext,
  type MessageHandler,
  type RecordPosition,
  recordId,
} from '@thorax/kafka';
import { LOGGER, type Logger, ThoraxMetrics } from '@thorax/observability';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { StudyIntakeService } from './study-intake.service';

/** Consumes thorax.studies.v1 (all partitions) and admits each record. */
@Injectable()
export class StudiesConsumer implements OnApplicationBootstrap, MessageHandler<Buffer> {
  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    @Inject(CONSUMERS) private readonly consumers: ConsumerPort,
    private readonly intake: StudyIntakeService,
    private readonly metrics: ThoraxMetrics,
    @Inject(LOGGER) log: Logger,
  ) {
    this.debug = log.isLevelEnabled('debug');
  }

  /** Debug lines only when asked for: a record's logger is built only when it logs. */
  private readonly debug: boolean;

  onApplicationBootstrap(): void {
    this.consumers.consume(
      {
        groupId: this.config.INGEST_GROUP_ID,
        topic: this.config.TOPIC_STUDIES,
        stage: 'ingest',
        findingsTopic: this.config.TOPIC_FINDINGS,
        partitionsConsumedConcurrently: this.config.INGEST_PARTITIONS_CONCURRENCY,
        maxInFlightPerPartition: this.config.INGEST_IN_FLIGHT_PER_PARTITION,
        // The value is the PACS's file as it came; StudyIntakeService checks it.
        decode: (value) => value,
        describe: (data, position, headers) => this.describe(data, position, headers),
      },
      this,
    );
  }

  async handle(delivery: Delivery<Buffer>): Promise<void> {
    const { message, headers, forward, position } = delivery;
    const upload = { id: position.key, data: message, headers };
    const accepted = await this.metrics.time('admit', () => this.intake.admit(upload, receivedAt(headers, position), forward));
    if (this.debug) delivery.log.debug({ contentType: accepted.contentType, bytes: accepted.sizeBytes }, 'study admitted');
  }

  private describe(data: Buffer | null, position: RecordPosition, headers: Record<string, string>): FailureContext {
    return {
      id: recordId(position),
      study: studyInfoFromRef(this.intake.studyOf({ id: position.key, data: data ?? Buffer.alloc(0), headers })),
      receivedAt: receivedAt(headers, position),
    };
  }
}

/** Receipt time: an upstream edge's stamp when present, else the record's broker timestamp. */
function receivedAt(headers: Record<string, string>, position: RecordPosition): Date {
  const stamped = headers[HEADERS.receivedAt];
  const parsed = stamped ? new Date(stamped) : null;
  if (parsed && !Number.isNaN(parsed.getTime())) return parsed;
  return Number.isFinite(position.timestamp) && position.timestamp > 0 ? new Date(position.timestamp) : new Date();
}
