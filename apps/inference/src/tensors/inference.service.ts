import { Inject, Injectable } from '@nestjs/common';
import {
  encodeFindingsEvent,
  type FindingsEvent,
  okFindingsEvent,
  PixelFormat,
  PreprocessedImage,
  studyInfoFromRef,
  ThoraxError,
} from '@thorax/contracts';
import { forwardedHeaders, type IncomingRecord, PUBLISHER, type Publisher } from '@thorax/kafka';
import { ThoraxMetrics } from '@thorax/observability';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';
import { ModelService } from '../model/model.service';

/** Runs the active model on a wire image and publishes its findings event. */
@Injectable()
export class InferenceService {
  constructor(
    @Inject(INFERENCE_CONFIG) private readonly config: InferenceConfig,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
    private readonly model: ModelService,
    private readonly metrics: ThoraxMetrics,
  ) {}

  async infer(record: IncomingRecord, image: PreprocessedImage): Promise<FindingsEvent> {
    const classifier = this.model.classifier;
    const { width, height } = classifier.inputSize;
    if (image.pixelFormat !== PixelFormat.PIXEL_FORMAT_GREY8 || image.width !== width || image.height !== height) {
      throw new ThoraxError(
        'MODEL_INPUT_MISMATCH',
        `image is ${image.width}x${image.height} format ${image.pixelFormat}; model expects ${width}x${height} grey8`,
        { stage: 'inference' },
      );
    }
    if (image.pixels.length !== width * height) {
      throw new ThoraxError('INVALID_MESSAGE', `pixels hold ${image.pixels.length} bytes for ${width}x${height}`, {
        stage: 'inference',
      });
    }
    const { name, version, labels, thresholds } = classifier.metadata;
    const timer = this.metrics.inferenceDuration.startTimer({ model: name, version, provider: classifier.provider });
    let probabilities: Float32Array;
    try {
      [probabilities] = (await classifier.classify([image.pixels])) as [Float32Array];
    } catch (error) {
      throw new ThoraxError('INFERENCE_FAILED', (error as Error).message, { stage: 'inference', transient: true, cause: error });
    } finally {
      timer();
    }
    this.metrics.inferenceBatchSize.observe({ model: name, version }, 1);
    const event = okFindingsEvent({
      id: image.id,
      study: studyInfoFromRef(image.study),
      receivedAt: image.receivedAt ?? new Date(record.timestamp),
      model: { name, version, sha256: classifier.sha256, provider: classifier.provider },
      labels,
      thresholds,
      probabilities,
    });
    await this.publisher.publish([
      { topic: this.config.TOPIC_FINDINGS, key: image.id, value: encodeFindingsEvent(event), headers: forwardedHeaders(record) },
    ]);
    for (const finding of event.findings) {
      this.metrics.findings.inc({ label: finding.label, positive: String(finding.positive) });
    }
    return event;
  }
}

/** Decodes a thorax.tensors.v1 value; anything else is INVALID_MESSAGE. */
export function decodePreprocessedImage(value: Buffer | null): PreprocessedImage {
  if (!value || value.length === 0) throw new ThoraxError('INVALID_MESSAGE', 'empty tensors record', { stage: 'inference' });
  let image: PreprocessedImage;
  try {
    image = PreprocessedImage.decode(value);
  } catch (error) {
    throw new ThoraxError('INVALID_MESSAGE', `not a thorax.v1.PreprocessedImage: ${(error as Error).message}`, {
      stage: 'inference',
    });
  }
  if (!image.id) throw new ThoraxError('INVALID_MESSAGE', 'PreprocessedImage without id', { stage: 'inference' });
  return image;
}
