import { Inject, Injectable } from '@nestjs/common';
import { ImageAccepted, PixelFormat, PreprocessedImage, ThoraxError } from '@thorax/contracts';
import { toWireImage, WIRE_PREPROCESSING, type WireImageOptions } from '@thorax/imaging';
import { forwardedHeaders, type IncomingRecord, PUBLISHER, type Publisher } from '@thorax/kafka';
import { ThoraxMetrics } from '@thorax/observability';
import { PREPROCESS_CONFIG, type PreprocessConfig } from '../config';

/**
 * Decodes an accepted image into the model-independent wire image (8-bit grey, fixed square
 * size) and publishes it to thorax.tensors.v1.
 */
@Injectable()
export class PreprocessService {
  private readonly wire: WireImageOptions;

  constructor(
    @Inject(PREPROCESS_CONFIG) private readonly config: PreprocessConfig,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
    private readonly metrics: ThoraxMetrics,
  ) {
    this.wire = {
      size: config.PREPROCESS_WIRE_SIZE,
      maxInputPixels: config.PREPROCESS_MAX_PIXELS,
      minInputSide: config.PREPROCESS_MIN_SIDE,
    };
  }

  async process(record: IncomingRecord, accepted: ImageAccepted): Promise<PreprocessedImage> {
    if (!accepted.data || accepted.data.length === 0) {
      throw new ThoraxError('INVALID_MESSAGE', 'ImageAccepted carries no inline data (claim-check not enabled)', {
        stage: 'preprocess',
      });
    }
    const data = Buffer.from(accepted.data);
    const wire = await this.metrics.time('decode', () => toWireImage(data, this.wire));
    const image: PreprocessedImage = {
      id: accepted.id,
      study: accepted.study,
      priority: accepted.priority,
      receivedAt: accepted.receivedAt,
      width: wire.width,
      height: wire.height,
      pixelFormat: PixelFormat.PIXEL_FORMAT_GREY8,
      pixels: wire.pixels,
      source: {
        contentType: accepted.contentType,
        width: wire.source.width,
        height: wire.source.height,
        bitsStored: wire.source.bitsStored,
        frames: 1,
        frameIndex: 0,
        photometricInterpretation: '',
      },
      preprocessing: WIRE_PREPROCESSING,
    };
    await this.publisher.publish([
      {
        topic: this.config.TOPIC_TENSORS,
        key: accepted.id,
        value: Buffer.from(PreprocessedImage.encode(image).finish()),
        headers: forwardedHeaders(record),
      },
    ]);
    return image;
  }
}

/** Decodes a thorax.images.v1 value; a record that is not one is INVALID_MESSAGE. */
export function decodeImageAccepted(value: Buffer | null): ImageAccepted {
  if (!value || value.length === 0) throw new ThoraxError('INVALID_MESSAGE', 'empty images record', { stage: 'preprocess' });
  let accepted: ImageAccepted;
  try {
    accepted = ImageAccepted.decode(value);
  } catch (error) {
    throw new ThoraxError('INVALID_MESSAGE', `not a thorax.v1.ImageAccepted: ${(error as Error).message}`, {
      stage: 'preprocess',
    });
  }
  if (!accepted.id) throw new ThoraxError('INVALID_MESSAGE', 'ImageAccepted without id', { stage: 'preprocess' });
  return accepted;
}
