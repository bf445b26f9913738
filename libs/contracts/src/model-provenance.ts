import type { ModelInfo } from './findings-event';
import type { ModelRef } from './generated/thorax/v1/findings';

/**
 * Where a model's training data came from, as every findings event, REST and gRPC result and FHIR
 * resource states it (docs/contract.md, "Model provenance"). Read from the model file's metadata
 * by libs/model-runtime; consumers decide from it whether a result may be shown as a finding.
 */
export interface TrainingProvenance {
  /** `synthetic`, `nih-chestxray14`, another dataset slug, or `unknown` when the model file does not say. */
  data: string;
  /** True only when the model file declares clinical validation (`thorax.training.clinical`). */
  clinical: boolean;
  /** The dataset name the trainer recorded, or null. */
  dataset: string | null;
  /** One sentence for people: what the model was trained on and whether it is for clinical use. */
  note: string;
}

/** The `data` value of models trained on generated images. */
export const SYNTHETIC_DATA = 'synthetic';
/** The `data` value of models trained on the NIH ChestX-ray14 release. */
export const NIH_CHESTXRAY14_DATA = 'nih-chestxray14';
/** The `data` value when the model file records no training data. */
export const UNKNOWN_DATA = 'unknown';

/** The sentence of `TrainingProvenance.note` (also the FHIR Device and Observation note). */
export function provenanceNote(provenance: Pick<TrainingProvenance, 'data' | 'clinical'>): string {
  if (provenance.data === SYNTHETIC_DATA)
    return 'Demonstration model trained on synthetic images; not for clinical use.';
  if (provenance.clinical) return `Model trained on ${provenance.data} data and declared clinically validated by its publisher.`;
  if (provenance.data === UNKNOWN_DATA)
    return 'Model of unknown training data; not validated for clinical use.';
  if (provenance.data === NIH_CHESTXRAY14_DATA)
    return 'Research model trained on NIH ChestX-ray14; not validated for clinical use.';
  return `Research model trained on ${provenance.data} data; not validated for clinical use.`;
}

/**
 * The event's model in the contract's key order, provenance included when recorded (the results
 * store keeps events as jsonb, which reorders keys; REST bodies give them back in this order).
 */
export function orderedModel(model: ModelInfo, options: { provider: boolean } = { provider: true }): ModelInfo {
  const { provenance: p } = model;
  return {
    name: model.name,
    version: model.version,
    sha256: model.sha256,
    ...(options.provider && model.provider !== undefined ? { provider: model.provider } : {}),
    ...(p ? { provenance: { data: p.data, clinical: p.clinical, dataset: p.dataset, note: p.note } } : {}),
  };
}

/** The event's model as the gRPC ModelRef message (thorax/v1/findings.proto). */
export function toModelRef(model: ModelInfo): ModelRef {
  const { provenance: p } = model;
  return {
    name: model.name,
    version: model.version,
    sha256: model.sha256,
    provenance: p ? { data: p.data, clinical: p.clinical, dataset: p.dataset ?? '', note: p.note } : undefined,
  };
}
