import { flag, list, port, positiveInt, z } from '@thorax/config';

/** An application entity title: 1-16 printable ASCII characters, no backslash, not all spaces. */
const AE_TITLE = /^[\x20-\x5b\x5d-\x7e]{1,16}$/;

const aeTitle = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v) => v.trim())
    .refine((v) => AE_TITLE.test(v), 'an AE title is 1-16 printable ASCII characters without a backslash');

/** Calling AE titles allowed to associate; `*` (alone or in the list) allows any: null. */
const aeTitleList = (fallback: string) =>
  list(fallback)
    .refine((values) => values.length > 0, 'give at least one AE title, or * for any')
    .refine((values) => values.every((v) => v === '*' || AE_TITLE.test(v)), 'an AE title is 1-16 printable ASCII characters without a backslash')
    .transform((values) => (values.includes('*') ? null : values));

/** The DIMSE storage SCP of ingest (docs/pacs.md). Spread into the ingest schema. */
export const dimseEnv = {
  /** Listen for DICOM associations (C-ECHO, C-STORE). */
  INGEST_DIMSE_ENABLED: flag(true),
  INGEST_DIMSE_PORT: port(11112),
  /** The called AE title this SCP answers to; associations to another title are rejected. */
  INGEST_DIMSE_AE_TITLE: aeTitle('THORAX'),
  INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES: aeTitleList('*'),
  /** Largest P-DATA PDU this SCP receives, bytes (announced in the A-ASSOCIATE-AC). */
  INGEST_DIMSE_MAX_PDU_BYTES: z.coerce.number().int().min(4096).max(4_194_304).default(262_144),
  /** Associations served at once; one more is rejected as a transient local limit. */
  INGEST_DIMSE_MAX_ASSOCIATIONS: positiveInt(16),
  /** Largest single instance accepted over DIMSE, bytes (C-STORE answers 0xA700 above it). */
  INGEST_DIMSE_MAX_INSTANCE_BYTES: positiveInt(536_870_912),
  /** Time from TCP connect to the A-ASSOCIATE-RQ, ms. */
  INGEST_DIMSE_ASSOCIATION_TIMEOUT_MS: positiveInt(30_000),
  /** An association with no PDU for this long is aborted, ms. */
  INGEST_DIMSE_IDLE_TIMEOUT_MS: positiveInt(120_000),
};
