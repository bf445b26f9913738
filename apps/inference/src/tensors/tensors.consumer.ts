import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { PreprocessedImage } from '@thorax/contracts';
import {
  describeDecoded,
  type FailureContext,
  type IncomingRecord,
  KafkaConnection,
  type RecordHandler,
} from '@thorax/kafka';
import type { Logger } from '@thorax/observability';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';
import { ModelService } from '../model/model.service';
import { decodePreprocessedImage, InferenceService } from './inference.service';

/** Consumes thorax.tensors.v1 (all partitions) into thorax.findings.v1. */
@Injectable()
export class TensorsConsumer implements OnApplicationBootstrap, RecordHandler {
  constructor(
    @Inject(INFERENCE_CONFIG) private readonly config: InferenceConfig,
    private readonly kafka: KafkaConnection,
    private readonly inference: InferenceService,
    private readonly models: ModelService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const consumer = this.kafka.createConsumer(
      {
        groupId: this.config.INFERENCE_GROUP_ID,
        topic: this.config.TOPIC_TENSORS,
        stage: 'inference',
        findingsTopic: this.config.TOPIC_FINDINGS,
        partitionsConsumedConcurrently: this.config.INFERENCE_PARTITIONS_CONCURRENCY,
        // Many records per partition in flight, so the batcher can fill batches across them.
        maxInFlightPerPartition: this.config.INFERENCE_IN_FLIGHT_PER_PARTITION,
      },
      this,
    );
    // Backpressure: stop fetching while the batchers are above their high watermark.
    this.models.onPressure((high) => (high ? consumer.pause() : consumer.resume()));
    await consumer.start();
  }

  async handle(record: IncomingRecord, log: Logger): Promise<void> {
    const event = await this.inference.infer(record, decodePreprocessedImage(record.value));
    log.debug({ positives: event.positives.length, latencyMs: event.timing.latencyMs }, 'findings published');
  }

  describe(record: IncomingRecord): FailureContext {
    return describeDecoded(record, (value) => PreprocessedImage.decode(value));
  }
}
