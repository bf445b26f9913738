import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { HEADERS, type ImageAccepted, PixelFormat, PreprocessedImage, ThoraxError } from '@thorax/contracts';
import { DecodePool, WIRE_PREPROCESSING, type WireImageOptions } from '@thorax/imaging';
import { encodedRecord, PUBLISHER, type Publisher } from '@thorax/kafka';
import { ByteBudget, fetchVerified, type ObjectStore, parseClaimCheck } from '@thorax/object-store';
import { ThoraxMetrics } from '@thorax/observability';
import { PREPROCESS_CONFIG, type PreprocessConfig } from '../config';

/** Nest token of preprocess's ObjectStore (OBJECT_STORE_URL), which claim-checked images are read from. */
export const PREPROCESS_OBJECT_STORE = Symbol('thorax.preprocess.object-store');

/**
 * Decodes an accepted image (DICOM, PNG, JPEG) into the model-independent wire image (8-bit
 * grey, fixed square size) in decode worker threads with a hard time limit, and publishes it to
 * thorax.tensors.v1.
 */
@Injectable()
export class PreprocessService implements OnModuleDestroy {
  private readonly wire: WireImageOptions;
  private readonly decoder: DecodePool;
  /** Claim-checked images held in memory at once, from fetch to the end of their decode. */
  private readonly fetchBudget: ByteBudget;

  constructor(
    @Inject(PREPROCESS_CONFIG) private readonly config: PreprocessConfig,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
    private readonly metrics: ThoraxMetrics,
    @Inject(PREPROCESS_OBJECT_STORE) private readonly store: ObjectStore,
  ) {
    this.wire = {
      size: config.PREPROCESS_WIRE_SIZE,
      maxInputPixels: config.PREPROCESS_MAX_PIXELS,
      minInputSide: config.PREPROCESS_MIN_SIDE,
      maxFrames: config.PREPROCESS_MAX_FRAMES,
      maxInflatedBytes: config.PREPROCESS_MAX_INFLATED_BYTES,
      decodeTimeoutMs: config.PREPROCESS_DECODE_TIMEOUT_MS,
    };
    this.fetchBudget = new ByteBudget(config.PREPROCESS_FETCH_BUDGET_BYTES);
    this.decoder = new DecodePool({
      wire: this.wire,
      workers: config.PREPROCESS_DECODE_WORKERS,
      workerHeapMb: config.PREPROCESS_DECODE_WORKER_HEAP_MB,
    });
  }

  async onModuleDestroy(): Promise<void> {
    await this.decoder.close();
    await this.store.close();
  }

  /** `forward`: the headers that follow the image downstream (trace context, receipt time). */
  async process(accepted: ImageAccepted, forward: Record<string, string>): Promise<PreprocessedImage> {
    // The decode pool copies the bytes into the worker's transfer buffer: no copy here.
    const release = accepted.uri ? await this.fetchBudget.acquire(accepted.sizeBytes) : () => undefined;
    let wire: Awaited<ReturnType<DecodePool['decode']>>;
    try {
      const data = await this.bytesOf(accepted);
      wire = await this.metrics.time('decode', () => this.decoder.decode(data));
    } finally {
      release();
    }
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
      encodedRecord({ topic: this.config.TOPIC_TENSORS, key: accepted.id, headers: forward }, image, (m) => PreprocessedImage.encode(m).finish()),
    ]);
    return image;
  }

  /**
   * The image's bytes: inline, or fetched from the object store and verified against the size and
   * SHA-256 ingest recorded, before anything decodes them (docs/object-store.md).
   */
  private async bytesOf(accepted: ImageAccepted): Promise<Buffer> {
    if (accepted.data && accepted.data.length > 0) return accepted.data;
    if (!accepted.uri) throw new ThoraxError('INVALID_MESSAGE', 'ImageAccepted carries neither data nor a uri', { stage: 'preprocess' });
    const ref = parseClaimCheck(
      { [HEADERS.objectUri]: accepted.uri, [HEADERS.objectSha256]: accepted.sha256, [HEADERS.objectSize]: String(accepted.sizeBytes) },
      this.store,
      'preprocess',
    );
    if (!ref) throw new ThoraxError('INVALID_MESSAGE', 'ImageAccepted carries neither data nor a uri', { stage: 'preprocess' });
    return this.metrics.time('fetch', () => fetchVerified(this.store, ref, 'preprocess'));
  }
}
