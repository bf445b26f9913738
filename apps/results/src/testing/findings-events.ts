import {
  CHESTXRAY14_LABELS,
  errorFindingsEvent,
  type FindingsEvent,
  okFindingsEvent,
  provenanceNote,
  type StudyInfo,
  type TrainingProvenance,
} from '@thorax/contracts';

/** The provenance of the committed demonstration model. */
export const SYNTHETIC_PROVENANCE: TrainingProvenance = {
  data: 'synthetic',
  clinical: false,
  dataset: 'thorax-synthetic-cxr',
  note: provenanceNote({ data: 'synthetic', clinical: false }),
};

/** Valid thorax.findings.v1 events for the results tests. */
export function okEvent(
  id: string,
  options: {
    version?: string;
    study?: StudyInfo;
    positives?: string[];
    /** Per-label probabilities; labels not named get 0.83 when in `positives`, else 0.1. */
    probabilities?: Partial<Record<string, number>>;
    receivedAt?: Date;
  } = {},
): FindingsEvent {
  const positives = new Set(options.positives ?? ['Cardiomegaly']);
  const receivedAt = options.receivedAt ?? new Date('2026-11-30T10:00:00.000Z');
  return okFindingsEvent({
    id,
    study: options.study ?? { studyUid: '1.2.3', accession: 'ACC-1', patientId: 'P-1', viewPosition: 'PA' },
    receivedAt,
    completedAt: new Date(receivedAt.getTime() + 412),
    model: {
      name: 'chexnet-densenet121',
      version: options.version ?? '2026.11.30-1',
      sha256: 'a'.repeat(64),
      provenance: SYNTHETIC_PROVENANCE,
    },
    labels: CHESTXRAY14_LABELS,
    thresholds: CHESTXRAY14_LABELS.map(() => 0.5),
    probabilities: CHESTXRAY14_LABELS.map((label) => options.probabilities?.[label] ?? (positives.has(label) ? 0.83 : 0.1)),
  });
}

export function errorEvent(id: string, options: { message?: string; study?: StudyInfo } = {}): FindingsEvent {
  return errorFindingsEvent({
    id,
    study: options.study ?? { studyUid: '1.2.3', accession: 'ACC-1' },
    receivedAt: new Date('2026-11-30T10:00:00.000Z'),
    completedAt: new Date('2026-11-30T10:00:00.050Z'),
    error: { code: 'CORRUPT_IMAGE', stage: 'preprocess', message: options.message ?? 'truncated PNG' },
  });
}
