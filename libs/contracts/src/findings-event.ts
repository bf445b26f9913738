import Ajv2020 from 'ajv/dist/2020';
import type { ACTIVATION_MAPS_FORMAT, MapRegion } from './activation-maps';
import addFormats from 'ajv-formats';
import { type ErrorCode, ThoraxError } from './error-codes';
import type { TrainingProvenance } from './model-provenance';
import schema from './schemas/thorax.findings.v1.schema.json';
import type { Stage } from './topics';

export const FINDINGS_SCHEMA_ID = 'thorax.findings.v1';
export const findingsEventJsonSchema: object = schema;

export interface StudyInfo {
  studyUid?: string | null;
  seriesUid?: string | null;
  accession?: string | null;
  patientId?: string | null;
  viewPosition?: string | null;
}

export interface ModelInfo {
  name: string;
  version: string;
  sha256: string;
  provider?: string;
  /**
   * What the model was trained on. Every event Thorax publishes carries it; it is optional in the
   * schema only so that events written before it existed still validate.
   */
  provenance?: TrainingProvenance;
}

/** The model of an event being built: provenance is always stated. */
export type ServingModelInfo = ModelInfo & { provenance: TrainingProvenance };

export interface LabelFinding {
  label: string;
  probability: number;
  threshold: number;
  positive: boolean;
}

export interface FindingsError {
  code: ErrorCode;
  stage: Stage;
  message: string;
}

/** The clinical priority a PACS set on the image (header thorax-priority). */
export type FindingsPriority = 'stat' | 'routine';

/** The wire image the model saw, kept in the object store for review. */
export interface WireImageRef {
  uri: string;
  width: number;
  height: number;
}

/** The class activation map of one positive label, a PNG in the object store (older producers). */
export interface HeatmapRef {
  label: string;
  uri: string;
}

/**
 * The class activation maps of every label, one `thorax.cam.v1` object in the object store
 * (activation-maps.ts); results renders a label's heatmap from it on request.
 */
export interface ActivationMapsRef {
  uri: string;
  format: typeof ACTIVATION_MAPS_FORMAT;
  labels: string[];
  height: number;
  width: number;
  region: MapRegion;
}

/** The thorax.findings.v1 event (JSON Schema: schemas/thorax.findings.v1.schema.json). */
export interface FindingsEvent {
  schema: typeof FINDINGS_SCHEMA_ID;
  id: string;
  status: 'ok' | 'error';
  study: StudyInfo;
  /** Optional: events of older producers have none (read as routine). */
  priority?: FindingsPriority;
  model: ModelInfo | null;
  findings: LabelFinding[];
  positives: string[];
  /** Optional (older producers): the wire image, or null when none was kept. */
  wireImage?: WireImageRef | null;
  /** Older producers only: one heatmap PNG per positive label; empty for a model without maps. */
  heatmaps?: HeatmapRef[];
  /** Every label's class activation maps; absent for a model without maps, when none were kept, and from older producers. */
  activationMaps?: ActivationMapsRef;
  timing: { receivedAt: string; completedAt: string; latencyMs: number };
  error: FindingsError | null;
}

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
addFormats(ajv);
const validate = ajv.compile<FindingsEvent>(schema);

export class FindingsEventInvalidError extends Error {
  override readonly name = 'FindingsEventInvalidError';
}

/** Throws FindingsEventInvalidError unless the value is a valid thorax.findings.v1 event. */
export function assertFindingsEvent(value: unknown): asserts value is FindingsEvent {
  if (!validate(value)) {
    const detail = (validate.errors ?? [])
      .map((e) => `${e.instancePath || '/'} ${e.message ?? 'invalid'}`)
      .join('; ');
    throw new FindingsEventInvalidError(`not a valid ${FINDINGS_SCHEMA_ID} event: ${detail}`);
  }
}

/** Validates and serialises an event for Kafka (UTF-8 JSON). */
export function encodeFindingsEvent(event: FindingsEvent): Buffer {
  assertFindingsEvent(event);
  return Buffer.from(JSON.stringify(event), 'utf8');
}

/** Parses and validates a Kafka record value. */
export function decodeFindingsEvent(value: Buffer | null): FindingsEvent {
  if (!value || value.length === 0) throw new FindingsEventInvalidError('empty findings record');
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (error) {
    throw new FindingsEventInvalidError(`findings record is not JSON: ${(error as Error).message}`);
  }
  assertFindingsEvent(parsed);
  return parsed;
}

function timing(receivedAt: Date, completedAt: Date): FindingsEvent['timing'] {
  return {
    receivedAt: receivedAt.toISOString(),
    completedAt: completedAt.toISOString(),
    latencyMs: Math.max(0, completedAt.getTime() - receivedAt.getTime()),
  };
}

/** Builds the error event every failed or rejected image ends in. */
export function errorFindingsEvent(args: {
  id: string;
  study?: StudyInfo;
  receivedAt: Date;
  error: FindingsError;
  model?: ServingModelInfo | null;
  completedAt?: Date;
}): FindingsEvent {
  return {
    schema: FINDINGS_SCHEMA_ID,
    id: args.id,
    status: 'error',
    study: args.study ?? {},
    model: args.model ?? null,
    findings: [],
    positives: [],
    timing: timing(args.receivedAt, args.completedAt ?? new Date()),
    error: { ...args.error, message: args.error.message.slice(0, 1024) },
  };
}

/** Builds the ok event from per-label probabilities in the model's label order. */
export function okFindingsEvent(args: {
  id: string;
  study?: StudyInfo;
  receivedAt: Date;
  model: ServingModelInfo;
  labels: readonly string[];
  thresholds: readonly number[];
  probabilities: ArrayLike<number>;
  completedAt?: Date;
  priority?: FindingsPriority;
  /** Review objects stored before the event is built: the wire image and the maps of every label (null: none). */
  review?: { wireImage: WireImageRef | null; activationMaps: ActivationMapsRef | null };
}): FindingsEvent {
  const findings = args.labels.map((label, i) => {
    const probability = Number(args.probabilities[i]);
    const threshold = Number(args.thresholds[i]);
    if (!Number.isFinite(probability) || probability < 0 || probability > 1) {
      // Never publish NaN or out-of-range scores as if they were findings.
      throw new ThoraxError('INFERENCE_FAILED', `model produced ${probability} for ${label}`, {
        stage: 'inference',
      });
    }
    return { label, probability, threshold, positive: probability >= threshold };
  });
  return {
    schema: FINDINGS_SCHEMA_ID,
    id: args.id,
    status: 'ok',
    study: args.study ?? {},
    ...(args.priority ? { priority: args.priority } : {}),
    model: args.model,
    findings,
    positives: findings.filter((f) => f.positive).map((f) => f.label),
    ...(args.review ? { wireImage: args.review.wireImage } : {}),
    ...(args.review?.activationMaps ? { activationMaps: args.review.activationMaps } : {}),
    timing: timing(args.receivedAt, args.completedAt ?? new Date()),
    error: null,
  };
}
