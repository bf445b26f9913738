import { flag, list, port, positiveInt, sharedEnv, TOPIC_NAMES, z } from '@thorax/config';
import { providerConfigError } from '@thorax/model-runtime';

const nonNegativeInt = (fallback: number) => z.coerce.number().int().min(0).default(fallback);

export const inferenceConfigSchema = z
  .object({
    ...sharedEnv,
    HTTP_PORT: port(8083),
    INFERENCE_GROUP_ID: z.string().min(1).default('thorax-inference'),
    /** Model directory: model.onnx, or version sub-directories of which the highest is served. */
    MODEL_DIR: z.string().min(1).default('models/thorax-tiny-cnn'),
    /** Pin a version directory (also how to roll back); empty: the highest, hot swapped to newer ones only. */
    INFERENCE_MODEL_VERSION: z.string().default(''),
    /** Which file of a version to serve: model.onnx, or a variant beside it (model.int8.onnx). */
    INFERENCE_MODEL_FILE: z
      .string()
      .regex(/^[\w.-]+\.onnx$/, 'a file name ending in .onnx')
      .default('model.onnx'),
    /** How often MODEL_DIR is checked for a newer version and for the served files (ms); 0: never. */
    INFERENCE_MODEL_POLL_MS: nonNegativeInt(30_000),
    /** Ordered execution providers (cuda, tensorrt, webgpu, cpu); one that does not load is logged and skipped. */
    INFERENCE_PROVIDERS: list('cuda,cpu').pipe(
      z
        .array(
          z.string().superRefine((name, ctx) => {
            const error = providerConfigError(name);
            if (error) ctx.addIssue({ code: 'custom', message: error });
          }),
        )
        .min(1),
    ),
    /**
     * Worker threads, each with its own ONNX Runtime session, and ORT threads per worker. Two
     * single-threaded workers overlap one batch's inference with the next one's hand-off; on two
     * cores they served 729 img/s against 641 for one two-threaded worker (npm run bench:inference).
     */
    INFERENCE_WORKERS: positiveInt(2),
    INFERENCE_INTRA_OP_THREADS: positiveInt(1),
    /** Dynamic batcher: flush at this many images ... */
    INFERENCE_MAX_BATCH: positiveInt(8),
    /** ... or when the oldest waiting image has waited this long (ms). */
    INFERENCE_MAX_DELAY_MS: nonNegativeInt(5),
    /**
     * Longest an inference batch may run (ms) before its worker is retired and replaced and its
     * images retried; 0: 20 × the slowest warm-up batch, at least 10 s.
     */
    INFERENCE_BATCH_TIMEOUT_MS: nonNegativeInt(0),
    /** Queue depth (images) at which the Kafka partitions are paused, and resumed. */
    INFERENCE_QUEUE_HIGH: positiveInt(128),
    INFERENCE_QUEUE_LOW: nonNegativeInt(32),
    /** Records of one partition in flight at once (offsets still commit in order). */
    INFERENCE_IN_FLIGHT_PER_PARTITION: positiveInt(32),
    INFERENCE_PARTITIONS_CONCURRENCY: positiveInt(6),
    /** Canary: this version gets INFERENCE_CANARY_PERCENT of images, chosen by a hash of the id. */
    INFERENCE_CANARY_VERSION: z.string().default(''),
    INFERENCE_CANARY_PERCENT: z.coerce.number().min(0).max(100).default(0),
    /** Shadow: this version also runs on every image; its findings go to the shadow topic only. */
    INFERENCE_SHADOW_VERSION: z.string().default(''),
    /**
     * Review images: the wire image and, for a model with class activation maps, one heatmap per
     * positive label, stored in the object store before the findings event that names them.
     */
    INFERENCE_REVIEW_IMAGES: flag(true),
    TOPIC_FINDINGS_SHADOW: z.string().min(1).default(TOPIC_NAMES.findingsShadow),
    /**
     * Compacted topic holding the model selection the admin API sets (primary, canary, shadow),
     * which every replica follows; the INFERENCE_*_VERSION variables are the defaults until it has a record.
     */
    INFERENCE_CONTROL_TOPIC: z.string().min(1).default('thorax.inference.control.v1'),
    /** Longest wait to read the control topic at start-up, and for a change to be applied (ms). */
    INFERENCE_CONTROL_TIMEOUT_MS: positiveInt(120_000),
  })
  .refine((c) => c.INFERENCE_QUEUE_LOW <= c.INFERENCE_QUEUE_HIGH, {
    path: ['INFERENCE_QUEUE_LOW'],
    message: 'must not exceed INFERENCE_QUEUE_HIGH',
  })
  .refine((c) => c.INFERENCE_CANARY_PERCENT === 0 || c.INFERENCE_CANARY_VERSION !== '', {
    path: ['INFERENCE_CANARY_VERSION'],
    message: 'required when INFERENCE_CANARY_PERCENT > 0',
  });

export type InferenceConfig = z.infer<typeof inferenceConfigSchema>;
export const INFERENCE_CONFIG = Symbol('thorax.inference.config');
