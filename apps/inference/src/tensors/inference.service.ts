import { Inject, Injectable } from '@nestjs/common';
import {
  encodeFindingsEvent,
  type FindingsEvent,
  okFindingsEvent,
  PixelFormat,
  PreprocessedImage,
  Priority,
  studyInfoFromRef,
  ThoraxError,
} from '@thorax/contracts';
import { PUBLISHER, type Publisher } from '@thorax/kafka';
import { LOGGER, type Logger, ThoraxMetrics } from '@thorax/observability';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';
import type { ModelSlot } from '../model/model-slot';
import { ModelService } from '../model/model.service';
import { ReviewImagesService } from '../review/review-images.service';

/**
 * Runs a wire image through the dynamic batcher of the model version that answers for it and
 * publishes the findings event; a shadow version, when configured, then sees the same image and
 * its findings go to the shadow topic only.
 */
@Injectable()
export class InferenceService {
  constructor(
    @Inject(INFERENCE_CONFIG) private readonly config: InferenceConfig,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
    @Inject(LOGGER) private readonly log: Logger,
    private readonly models: ModelService,
    private readonly metrics: ThoraxMetrics,
    private readonly review: ReviewImagesService,
  ) {}

  /**
   * `forward`: the headers that follow the image downstream (trace context, receipt time). An
   * image without receipt time is stamped now.
   */
  async infer(image: PreprocessedImage, forward: Record<string, string>): Promise<FindingsEvent> {
    const slot = this.models.route(image.id);
    const event = await this.run(slot, forward, image, this.config.TOPIC_FINDINGS);
    for (const finding of event.findings) {
      this.metrics.findings.inc({ label: finding.label, positive: String(finding.positive) });
    }
    // The shadow runs once the primary findings are published: a failed primary attempt is
    // retried (or dead-lettered) without the shadow, so each image gets one shadow result per
    // delivery, not one per primary attempt. Nothing below can fail the record.
    const shadow = this.models.shadow;
    if (shadow) await this.runShadow(shadow, forward, image);
    return event;
  }

  private async run(
    slot: ModelSlot,
    forward: Record<string, string>,
    image: PreprocessedImage,
    topic: string,
  ): Promise<FindingsEvent> {
    const { width, height } = slot.pool.inputSize;
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
    let probabilities: Float32Array;
    let map: Float32Array | null;
    try {
      ({ probabilities, map } = await slot.classifyWithMap(image.pixels, image.priority === Priority.PRIORITY_STAT));
    } catch (error) {
      throw new ThoraxError('INFERENCE_FAILED', (error as Error).message, {
        stage: 'inference',
        transient: true,
        cause: error,
      });
    }
    const { name, version, labels, thresholds, provenance } = slot.pool.metadata;
    const findings = {
      id: image.id,
      study: studyInfoFromRef(image.study),
      receivedAt: image.receivedAt ?? new Date(),
      model: { name, version, sha256: slot.pool.sha256, provider: slot.pool.provider, provenance },
      labels,
      thresholds,
      probabilities,
      priority: image.priority === Priority.PRIORITY_STAT ? 'stat' : 'routine',
    } as const;
    let event = okFindingsEvent(findings);
    // Review objects (the wire image, every label's activation maps) are stored before the event
    // that names them is published; the shadow's findings are not reviewed.
    if (topic === this.config.TOPIC_FINDINGS && this.review.enabled) {
      const review = await this.review.keep({ id: image.id, pixels: image.pixels, width, height, metadata: slot.pool.metadata, maps: map });
      event = okFindingsEvent({ ...findings, review });
    }
    const headers = slot.role === 'primary' ? forward : { ...forward, 'thorax-model-role': slot.role };
    await this.publisher.publish([{ topic, key: image.id, value: encodeFindingsEvent(event), headers }]);
    return event;
  }

  /** Shadow results never block or fail the primary one. */
  private async runShadow(slot: ModelSlot, forward: Record<string, string>, image: PreprocessedImage): Promise<null> {
    try {
      await this.run(slot, forward, image, this.config.TOPIC_FINDINGS_SHADOW);
    } catch (error) {
      this.log.warn({ err: error, version: slot.version }, 'shadow model failed on this image');
    }
    return null;
  }
}
