import { port, positiveInt, sharedEnv, z } from '@thorax/config';

export const ingestConfigSchema = z.object({
  ...sharedEnv,
  HTTP_PORT: port(8081),
  INGEST_GROUP_ID: z.string().min(1).default('thorax-ingest'),
  /** Largest accepted file, bytes (default 50 MiB, the studies topic's record limit). */
  INGEST_MAX_BYTES: positiveInt(52_428_800),
  INGEST_PARTITIONS_CONCURRENCY: positiveInt(2),
});

export type IngestConfig = z.infer<typeof ingestConfigSchema>;
export const INGEST_CONFIG = Symbol('thorax.ingest.config');
