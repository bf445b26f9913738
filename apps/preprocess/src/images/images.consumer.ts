import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { ImageAccepted } from '@thorax/contracts';
import {
  CONSUMERS,
  type ConsumerPort,
  type Delivery,
  describeStudyMessage,
  type MessageHandler,
  protobufDecoder,
} from '@thorax/kafka';
import { LOGGER, type Logger } from '@thorax/observability';
import { PREPROCESS_CONFIG, type PreprocessConfig } from '../config';
import { PreprocessService } from './preprocess.service';

/** Consumes thorax.images.v1 (all partitions) into thorax.tensors.v1. */
@Injectable()
export class ImagesConsumer implements OnApplicationBootstrap, MessageHandler<ImageAccepted> {
  constructor(
    @Inject(PREPROCESS_CONFIG) private readonly config: PreprocessConfig,
    @Inject(CONSUMERS) private readonly consumers: ConsumerPort,
    private readonly preprocess: PreprocessService,
    @Inject(LOGGER) log: Logger,
  ) {
    this.debug = log.isLevelEnabled('debug');
  }

  /** Debug lines only when asked for: a record's logger is built only when it logs. */
  private readonly debug: boolean;

  onApplicationBootstrap(): void {
    this.consumers.consume(
      {
        groupId: this.config.PREPROCESS_GROUP_ID,
        topic: this.config.TOPIC_IMAGES,
        stage: 'preprocess',
        findingsTopic: this.config.TOPIC_FINDINGS,
        decode: protobufDecoder(ImageAccepted, 'thorax.v1.ImageAccepted', 'preprocess'),
        describe: describeStudyMessage,
        partitionsConsumedConcurrently: this.config.PREPROCESS_PARTITIONS_CONCURRENCY,
        maxInFlightPerPartition: this.config.PREPROCESS_IN_FLIGHT_PER_PARTITION,
      },
      this,
    );
  }

  async handle(delivery: Delivery<ImageAccepted>): Promise<void> {
    const image = await this.preprocess.process(delivery.message, delivery.forward);
    if (this.debug) delivery.log.debug({ width: image.source?.width, height: image.source?.height }, 'image preprocessed');
  }
}
