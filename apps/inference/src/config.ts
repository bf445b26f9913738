import { list, port, positiveInt, sharedEnv, z } from '@thorax/config';

export const inferenceConfigSchema = z.object({
  ...sharedEnv,
  HTTP_PORT: port(8083),
  INFERENCE_GROUP_ID: z.string().min(1).default('thorax-inference'),
  /** Model directory: model.onnx, or version sub-directories of which the highest is served. */
  MODEL_DIR: z.string().min(1).default('models/thorax-tiny-cnn'),
  /** Ordered execution providers; unavailable ones are skipped with a log line. */
  INFERENCE_PROVIDERS: list('cuda,cpu').pipe(z.array(z.string()).min(1)),
  INFERENCE_INTRA_OP_THREADS: positiveInt(2),
  INFERENCE_PARTITIONS_CONCURRENCY: positiveInt(1),
});

export type InferenceConfig = z.infer<typeof inferenceConfigSchema>;
export const INFERENCE_CONFIG = Symbol('thorax.inference.config');
