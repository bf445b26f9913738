import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { type ImageAccepted, PixelFormat, PreprocessedImage, ThoraxError } from '@thorax/contracts';
import { DecodePool, WIRE_PREPROCESSING, type WireImageOptions } from '@thorax/imaging';
import { asBuffer, PUBLISHER, type Publisher } from '@thorax/kafka';
import { ThoraxMetrics } from '@thorax/observability';
import { PREPROCESS_CONFIG, type PreprocessConfig } from '../config';

/**
 * Decodes an accepted image (DICOM, PNG, JPEG) into the model-independent wire image (8-bit
 * grey, fixed square size) in decode worker threads with a hard time limit, and publishes it to
 * thorax.tensors.v1.
 */
@Injectable()
export class PreprocessService implements OnModuleDestroy {
  private readonly wire: WireImageOptions;
  private readonly decoder: DecodePool;

  constructor(
    @Inject(PREPROCESS_CONFIG) private readonly config: PreprocessConfig,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
    private readonly metrics: ThoraxMetrics,
  ) {
    this.wire = {
      size: config.PREPROCESS_WIRE_SIZE,
      maxInputPixels: config.PREPROCESS_MAX_PIXELS,
      minInputSide: config.PREPROCESS_MIN_SIDE,
      maxFrames: config.PREPROCESS_MAX_FRAMES,
      maxInflatedBytes: config.PREPROCESS_MAX_INFLATED_BYTES,
      decodeTimeoutMs: config.PREPROCESS_DECODE_TIMEOUT_MS,
    };
    this.decoder = new DecodePool({
      wire: this.wire,
      workers: config.PREPROCESS_DECODE_WORKERS,
      workerHeapMb: config.PREPROCESS_DECODE_WORKER_HEAP_MB,
    });
  }

  async onModuleDestroy(): Promise<void> {
    await this.decoder.close();
  }

  /** `forward`: the headers that follow the image downstream (trace context, receipt time). */
  async process(accepted: ImageAccepted, forward: Record<string, string>): Promise<PreprocessedImage> {
    if (!accepted.data || accepted.data.length === 0) {
      throw new ThoraxError('INVALID_MESSAGE', 'ImageAccepted carries no inline data (claim-check not enabled)', {
        stage: 'preprocess',
      });
    }
    // The decode pool copies the bytes into the worker's transfer buffer: no copy here.
    const data = accepted.data;
    const wire = await this.metrics.time('decode', () => this.decoder.decode(data));
    const image: PreprocessedImage = {
      id: accepted.id,
      study: accepted.study,
      priority: accepted.priority,
      receivedAt: accepted.receivedAt,
      width: wire.width,
      height: wire.height,
      pixelFormat: PixelFormat.PIXEL_FORMAT_GREY8,
      pixels: Buffer.from(wire.pixels.buffer, wire.pixels.byteOffset, wire.pixels.byteLength),
      source: {
        contentType: accepted.contentType,
        width: wire.source.width,
        height: wire.source.height,
        bitsStored: wire.source.bitsStored,
        frames: wire.source.frames,
        frameIndex: wire.source.frameIndex,
        photometricInterpretation: wire.source.photometricInterpretation,
      },
      preprocessing: WIRE_PREPROCESSING,
    };
    await this.publisher.publish([
      {
        topic: this.config.TOPIC_TENSORS,
        key: accepted.id,
        value: asBuffer(PreprocessedImage.encode(image).finish()),
        headers: forward,
      },
    ]);
    return image;
  }
}
