import { flag, positiveInt, sharedEnv, z } from '@thorax/config';
import { existsSync } from 'node:fs';
import path from 'node:path';

/** deploy/kafka/topics.conf above this file: the repository, or /opt/thorax in the image. */
function defaultTopicsConf(): string {
  for (let dir = __dirname; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'deploy', 'kafka', 'topics.conf');
    if (existsSync(candidate)) return candidate;
  }
  return path.resolve('deploy', 'kafka', 'topics.conf');
}

export const topicsConfigSchema = z.object({
  ...sharedEnv,
  /** The topic definitions (deploy/kafka/topics.conf format). */
  TOPICS_CONF: z.string().min(1).default(defaultTopicsConf()),
  /** Replication factor for every topic instead of the file's (e.g. 1 for one development broker). */
  KAFKA_TOPIC_REPLICATION_FACTOR: z.coerce.number().int().min(1).max(32).optional(),
  /** min.insync.replicas for every topic instead of the file's; at most the replication factor. */
  KAFKA_TOPIC_MIN_INSYNC_REPLICAS: z.coerce.number().int().min(1).max(32).optional(),
  /** How long to wait for the cluster to answer with enough brokers, ms. */
  TOPICS_WAIT_TIMEOUT_MS: positiveInt(180_000),
  /** Report what would change without changing it. */
  TOPICS_DRY_RUN: flag(false),
});

export type TopicsConfig = z.infer<typeof topicsConfigSchema>;
