import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { ImageAccepted } from '@thorax/contracts';
import {
  describeDecoded,
  type FailureContext,
  type IncomingRecord,
  KafkaConnection,
  type RecordHandler,
} from '@thorax/kafka';
import type { Logger } from '@thorax/observability';
import { PREPROCESS_CONFIG, type PreprocessConfig } from '../config';
import { decodeImageAccepted, PreprocessService } from './preprocess.service';

/** Consumes thorax.images.v1 (all partitions) into thorax.tensors.v1. */
@Injectable()
export class ImagesConsumer implements OnApplicationBootstrap, RecordHandler {
  constructor(
    @Inject(PREPROCESS_CONFIG) private readonly config: PreprocessConfig,
    private readonly kafka: KafkaConnection,
    private readonly preprocess: PreprocessService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.kafka
      .createConsumer(
        {
          groupId: this.config.PREPROCESS_GROUP_ID,
          topic: this.config.TOPIC_IMAGES,
          stage: 'preprocess',
          findingsTopic: this.config.TOPIC_FINDINGS,
          partitionsConsumedConcurrently: this.config.PREPROCESS_PARTITIONS_CONCURRENCY,
          maxInFlightPerPartition: this.config.PREPROCESS_IN_FLIGHT_PER_PARTITION,
        },
        this,
      )
      .start();
  }

  async handle(record: IncomingRecord, log: Logger): Promise<void> {
    const image = await this.preprocess.process(record, decodeImageAccepted(record.value));
    log.debug({ width: image.source?.width, height: image.source?.height }, 'image preprocessed');
  }

  describe(record: IncomingRecord): FailureContext {
    return describeDecoded(record, (value) => ImageAccepted.decode(value));
  }
}
