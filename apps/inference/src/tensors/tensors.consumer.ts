import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { PreprocessedImage } from '@thorax/contracts';
import {
  CONSUMERS,
  type ConsumerPort,
  type Delivery,
  describeStudyMessage,
  type MessageHandler,
  protobufDecoder,
} from '@thorax/kafka';
import { LOGGER, type Logger } from '@thorax/observability';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';
import { ModelService } from '../model/model.service';
import { InferenceService } from './inference.service';

/** Consumes thorax.tensors.v1 (all partitions) into thorax.findings.v1. */
@Injectable()
export class TensorsConsumer implements OnApplicationBootstrap, MessageHandler<PreprocessedImage> {
  constructor(
    @Inject(INFERENCE_CONFIG) private readonly config: InferenceConfig,
    @Inject(CONSUMERS) private readonly consumers: ConsumerPort,
    private readonly inference: InferenceService,
    private readonly models: ModelService,
    @Inject(LOGGER) log: Logger,
  ) {
    this.debug = log.isLevelEnabled('debug');
  }

  /** Debug lines only when asked for: a record's logger is built only when it logs. */
  private readonly debug: boolean;

  onApplicationBootstrap(): void {
    const consumption = this.consumers.consume(
      {
        groupId: this.config.INFERENCE_GROUP_ID,
        topic: this.config.TOPIC_TENSORS,
        stage: 'inference',
        findingsTopic: this.config.TOPIC_FINDINGS,
        decode: protobufDecoder(PreprocessedImage, 'thorax.v1.PreprocessedImage', 'inference'),
        describe: describeStudyMessage,
        partitionsConsumedConcurrently: this.config.INFERENCE_PARTITIONS_CONCURRENCY,
        // Many records per partition in flight, so the batcher can fill batches across them.
        maxInFlightPerPartition: this.config.INFERENCE_IN_FLIGHT_PER_PARTITION,
      },
      this,
    );
    // Backpressure: stop fetching while the batchers are above their high watermark.
    this.models.onPressure((high) => (high ? consumption.pause() : consumption.resume()));
  }

  async handle(delivery: Delivery<PreprocessedImage>): Promise<void> {
    const { message, forward, position } = delivery;
    const image = message.receivedAt ? message : { ...message, receivedAt: new Date(position.timestamp) };
    const event = await this.inference.infer(image, forward);
    if (this.debug) delivery.log.debug({ positives: event.positives.length, latencyMs: event.timing.latencyMs }, 'findings published');
  }
}
