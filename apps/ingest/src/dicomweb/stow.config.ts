import { flag, positiveInt } from '@thorax/config';

/** The DICOMweb STOW-RS edge of ingest (docs/pacs.md). Spread into the ingest schema. */
export const stowEnv = {
  /** Serve POST /dicomweb/studies. */
  INGEST_STOW_ENABLED: flag(true),
  /** Largest STOW-RS request body, bytes (413 above it). */
  INGEST_STOW_MAX_BYTES: positiveInt(1_073_741_824),
  /** Largest single instance in a STOW-RS request, bytes (its failure reason is 0xA700 above it). */
  INGEST_STOW_MAX_INSTANCE_BYTES: positiveInt(536_870_912),
};
