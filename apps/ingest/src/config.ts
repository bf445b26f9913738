import { flag, list, port, positiveInt, sharedEnv, z } from '@thorax/config';
import { DEFAULT_INTAKE_OPTIONS } from '@thorax/imaging';
import { edgeEnv } from './edge/edge.config';
import { dimseEnv } from './dimse/dimse.config';
import { stowEnv } from './dicomweb/stow.config';

/** A comma-separated list of DICOM code strings, upper-cased; `*` accepts any value (null). */
const codeList = (fallback: string) =>
  list(fallback).transform((values) => (values.includes('*') ? null : values.map((v) => v.toUpperCase())));

export const ingestConfigSchema = z.object({
  ...sharedEnv,
  HTTP_PORT: port(8081),
  INGEST_GROUP_ID: z.string().min(1).default('thorax-ingest'),
  /** Largest accepted file, bytes (default 50 MiB, the studies topic's record limit). */
  INGEST_MAX_BYTES: positiveInt(DEFAULT_INTAKE_OPTIONS.maxBytes),
  /** Largest DICOM dataset after inflating a deflated transfer syntax, bytes (zip-bomb guard). */
  INGEST_MAX_INFLATED_BYTES: positiveInt(DEFAULT_INTAKE_OPTIONS.maxInflatedBytes),
  INGEST_PARTITIONS_CONCURRENCY: positiveInt(6),
  /** Records of one partition handled at once (offsets still commit in order). */
  INGEST_IN_FLIGHT_PER_PARTITION: positiveInt(4),
  /** Accept DICOM at all (false: DICOM_NOT_SUPPORTED). */
  INGEST_DICOM_ENABLED: flag(true),
  /** Clinical gates on DICOM tags (docs/imaging.md); `*` switches one off. */
  INGEST_MODALITIES: codeList('CR,DX'),
  INGEST_VIEW_POSITIONS: codeList('PA,AP'),
  INGEST_REQUIRE_VIEW: flag(false),
  INGEST_BODY_PARTS: codeList('CHEST,THORAX'),
  ...edgeEnv,
  ...dimseEnv,
  ...stowEnv,
});

export type IngestConfig = z.infer<typeof ingestConfigSchema>;
export const INGEST_CONFIG = Symbol('thorax.ingest.config');
