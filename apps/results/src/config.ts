import { flag, port, positiveInt, sharedEnv, z } from '@thorax/config';

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
  /**
   * Partitions of the findings topic consumed at once (it has 6): their fetched records are
   * stored together, as one batch of up to RESULTS_BATCH_MAX_RECORDS.
   */
  RESULTS_PARTITIONS_CONCURRENCY: positiveInt(6),
  /** Most findings events stored in one transaction (one batch of the consumer). */
  RESULTS_BATCH_MAX_RECORDS: positiveInt(500),
  /**
   * Absolute URL of /fhir as EHR clients reach it (behind a proxy), used in Bundle fullUrl and
   * links; unset: taken from each request's Host header.
   */
  RESULTS_FHIR_BASE_URL: z
    .string()
    .regex(/^https?:\/\/[^/?#]+(\/[^?#]*)?$/, 'expected an absolute http(s) URL without query')
    .transform((url) => url.replace(/\/+$/, ''))
    .optional(),
  /**
   * Topic for each new version of a study's FHIR resources as a transaction Bundle (key: Study
   * Instance UID), e.g. thorax.fhir.v1; unset: not published. The topic must exist.
   */
  RESULTS_FHIR_TOPIC: z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, 'expected a Kafka topic name').optional(),
  /**
   * Study grouping: a study's FHIR bundle is published once no result of it has arrived for this
   * long, ms (again after a late instance); 0 publishes with every stored batch.
   */
  RESULTS_STUDY_SETTLE_MS: z.coerce.number().int().min(0).max(3_600_000).default(5000),
  /** Identifier.system of accession numbers in FHIR resources (the issuing department's URI). */
  RESULTS_FHIR_ACCESSION_SYSTEM: uri().optional(),
  /** Identifier.system of patient ids in FHIR subject references (the PACS's assigning authority). */
  RESULTS_FHIR_PATIENT_ID_SYSTEM: uri().optional(),
  /**
   * Topic of reviewers' verdicts (POST /v1/findings/{id}/feedback), keyed by image id; the store
   * is its outbox (docs/review.md). The topic must exist.
   */
  RESULTS_FEEDBACK_TOPIC: z.string().regex(/^[A-Za-z0-9._-]{1,249}$/, 'expected a Kafka topic name').default('thorax.feedback.v1'),
  /** How often verdicts not yet on the feedback topic (broker away, crash) are sent again, ms. */
  RESULTS_FEEDBACK_RELAY_MS: positiveInt(5000),
  /** Show accession numbers and patient ids on the review page (/review); off: none at all. */
  RESULTS_REVIEW_SHOW_PATIENT: flag(false),
  /** Most recent results the review worklist groups into studies. */
  RESULTS_REVIEW_WORKLIST_SIZE: positiveInt(200),
});

/** An absolute URI as FHIR Identifier.system wants it (http(s)://…, urn:oid:…, urn:uuid:…). */
function uri() {
  return z.string().regex(/^(https?:\/\/\S+|urn:[a-z0-9][a-z0-9-]{0,31}:\S+)$/i, 'expected an absolute URI (http(s)://… or urn:…)');
}

export type ResultsConfig = z.infer<typeof resultsConfigSchema>;
export const RESULTS_CONFIG = Symbol('thorax.results.config');
