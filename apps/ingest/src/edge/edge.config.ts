import { port, positiveInt, z } from '@thorax/config';

/** The HTTP and gRPC edges of ingest and the claim-check (docs/object-store.md). Spread into the ingest schema. */
export const edgeEnv = {
  /** gRPC thorax.v1.IngestService (SubmitStudy, Predict), grpc.health.v1 and reflection. */
  GRPC_PORT: port(50052),
  /**
   * Wins over GRPC_PORT when set: for launchers that give every service one environment, where
   * GRPC_PORT is results' (scripts/start.sh sets it to 50052 for ingest).
   */
  INGEST_GRPC_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  /**
   * Largest instance an edge puts in the studies record itself, bytes (default 8 MiB); larger ones
   * go to the object store and the record carries a reference (claim-check).
   */
  INGEST_INLINE_MAX_BYTES: positiveInt(8 * 1024 * 1024),
  /** Largest instance accepted through the claim-check (an edge upload or a referenced object), bytes. */
  INGEST_OBJECT_MAX_BYTES: positiveInt(536_870_912),
  /** How long POST /v1/predict and IngestService.Predict wait for the findings event, ms. */
  INGEST_PREDICT_TIMEOUT_MS: positiveInt(30_000),
  /** Predict calls waiting at once per ingest instance; one more is refused (HTTP 429, gRPC RESOURCE_EXHAUSTED). */
  INGEST_PREDICT_MAX_WAITS: positiveInt(256),
  /** Interval of the age-based sweep of claim-checked inputs, ms (OBJECT_STORE_RETENTION_HOURS). */
  INGEST_OBJECT_SWEEP_INTERVAL_MS: positiveInt(15 * 60_000),
};
