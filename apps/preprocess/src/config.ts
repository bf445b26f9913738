import { port, positiveInt, sharedEnv, z } from '@thorax/config';

export const preprocessConfigSchema = z.object({
  ...sharedEnv,
  HTTP_PORT: port(8082),
  PREPROCESS_GROUP_ID: z.string().min(1).default('thorax-preprocess'),
  /** Side of the square 8-bit wire image (DESIGN.md: 256). */
  PREPROCESS_WIRE_SIZE: positiveInt(256),
  /** Decompression-bomb guard: largest decoded image, in pixels. */
  PREPROCESS_MAX_PIXELS: positiveInt(50_000_000),
  PREPROCESS_MIN_SIDE: positiveInt(64),
  PREPROCESS_PARTITIONS_CONCURRENCY: positiveInt(2),
});

export type PreprocessConfig = z.infer<typeof preprocessConfigSchema>;
export const PREPROCESS_CONFIG = Symbol('thorax.preprocess.config');
