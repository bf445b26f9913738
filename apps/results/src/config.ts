import { port, positiveInt, sharedEnv, z } from '@thorax/config';

export const resultsConfigSchema = z.object({
  ...sharedEnv,
  HTTP_PORT: port(8080),
  GRPC_PORT: port(50051),
  RESULTS_GROUP_ID: z.string().min(1).default('thorax-results'),
  /** A PostgreSQL server (postgres://user:pass@host:5432/db); when unset, the embedded store. */
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// or postgresql:// URL')
    .optional(),
  /** Data directory of the embedded store (PGlite); `memory://` keeps it in memory (tests). */
  RESULTS_DATA_DIR: z.string().min(1).default('.data/results'),
  /** Connections in the pool when DATABASE_URL is set. */
  RESULTS_DB_POOL_SIZE: positiveInt(10),
  /**
   * How often a WatchFindings stream also polls the store, ms: picks up results stored by other
   * replicas sharing the same PostgreSQL server (local ones are pushed at once).
   */
  RESULTS_WATCH_POLL_MS: positiveInt(2000),
  RESULTS_PARTITIONS_CONCURRENCY: positiveInt(1),
});

export type ResultsConfig = z.infer<typeof resultsConfigSchema>;
export const RESULTS_CONFIG = Symbol('thorax.results.config');
