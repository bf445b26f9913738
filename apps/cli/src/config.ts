import { kafkaEnv, TOPIC_NAMES, z } from '@thorax/config';

const serviceUrl = (fallback: string) =>
  z
    .string()
    .url()
    .refine((u) => /^https?:\/\//.test(u), 'an http:// or https:// URL')
    .default(fallback)
    .transform((u) => u.replace(/\/+$/, ''));

/**
 * The CLI's environment: the services' Kafka variables (KAFKA_BROKERS, KAFKA_TLS*, KAFKA_SASL_*),
 * topic names, where each service's HTTP port is, and the API token. Parsed once, like a service.
 */
export const cliConfigSchema = z.object({
  ...kafkaEnv,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('warn'),
  TOPIC_STUDIES: z.string().min(1).default(TOPIC_NAMES.studies),
  TOPIC_IMAGES: z.string().min(1).default(TOPIC_NAMES.images),
  TOPIC_TENSORS: z.string().min(1).default(TOPIC_NAMES.tensors),
  TOPIC_FINDINGS: z.string().min(1).default(TOPIC_NAMES.findings),
  /** The replay ledger of `thorax dlq replay` (deploy/kafka/topics.conf). */
  THORAX_DLQ_REPLAYS_TOPIC: z.string().min(1).default('thorax.dlq.replays.v1'),
  /** Base URLs of the services' HTTP ports (health, readiness, metrics; inference's model admin API). */
  THORAX_INGEST_URL: serviceUrl('http://127.0.0.1:8081'),
  THORAX_PREPROCESS_URL: serviceUrl('http://127.0.0.1:8082'),
  THORAX_INFERENCE_URL: serviceUrl('http://127.0.0.1:8083'),
  THORAX_RESULTS_URL: serviceUrl('http://127.0.0.1:8080'),
  /** Bearer token (JWT) for the APIs when they require one; `--token` wins. */
  THORAX_TOKEN: z.string().min(1).optional(),
  /** Per-request timeout of HTTP calls to the services, ms. */
  THORAX_HTTP_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
});

export type CliConfig = z.infer<typeof cliConfigSchema>;

/** Base URL of each service, by name. */
export function serviceUrls(config: CliConfig): Record<'ingest' | 'preprocess' | 'inference' | 'results', string> {
  return {
    ingest: config.THORAX_INGEST_URL,
    preprocess: config.THORAX_PREPROCESS_URL,
    inference: config.THORAX_INFERENCE_URL,
    results: config.THORAX_RESULTS_URL,
  };
}
