import { port, positiveInt, sharedEnv, z } from '@thorax/config';
import { DEFAULT_WIRE_OPTIONS } from '@thorax/imaging';

export const preprocessConfigSchema = z.object({
  ...sharedEnv,
  HTTP_PORT: port(8082),
  PREPROCESS_GROUP_ID: z.string().min(1).default('thorax-preprocess'),
  /** Side of the square 8-bit wire image (docs/contract.md: 256). */
  PREPROCESS_WIRE_SIZE: positiveInt(DEFAULT_WIRE_OPTIONS.size),
  /** Decompression-bomb guard: largest decoded image, in pixels. */
  PREPROCESS_MAX_PIXELS: positiveInt(DEFAULT_WIRE_OPTIONS.maxInputPixels),
  PREPROCESS_MIN_SIDE: positiveInt(DEFAULT_WIRE_OPTIONS.minInputSide),
  /** Most frames a multi-frame DICOM may declare (only the first is decoded). */
  PREPROCESS_MAX_FRAMES: positiveInt(DEFAULT_WIRE_OPTIONS.maxFrames),
  /** Largest DICOM dataset after inflating a deflated transfer syntax, bytes. */
  PREPROCESS_MAX_INFLATED_BYTES: positiveInt(DEFAULT_WIRE_OPTIONS.maxInflatedBytes),
  /** Hard limit on decoding one image; the decode worker is replaced when it trips. */
  PREPROCESS_DECODE_TIMEOUT_MS: positiveInt(DEFAULT_WIRE_OPTIONS.decodeTimeoutMs),
  /** Decode worker threads, and the V8 heap each may use (MiB). */
  PREPROCESS_DECODE_WORKERS: positiveInt(2),
  PREPROCESS_DECODE_WORKER_HEAP_MB: positiveInt(2048),
  PREPROCESS_PARTITIONS_CONCURRENCY: positiveInt(6),
  /** Records of one partition handled at once (offsets still commit in order). */
  PREPROCESS_IN_FLIGHT_PER_PARTITION: positiveInt(4),
  /**
   * Bytes of claim-checked images (docs/object-store.md) held in memory at once, fetched and
   * decoding; more wait. An image larger than this is fetched alone. Default 1 GiB.
   */
  PREPROCESS_FETCH_BUDGET_BYTES: positiveInt(1024 * 1024 * 1024),
});

export type PreprocessConfig = z.infer<typeof preprocessConfigSchema>;
export const PREPROCESS_CONFIG = Symbol('thorax.preprocess.config');
