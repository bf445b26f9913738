import {
  type FindingsEvent,
  type FindingsResult,
  FindingsStatus,
  orderedModel,
  type StudyInfo,
  type StudyRef,
  toModelRef,
} from '@thorax/contracts';
import type { StoredFindings } from '../store/results-store.port';

/** The stored event as the gRPC FindingsResult message (thorax/v1/findings.proto). */
export function toFindingsResult(stored: StoredFindings): FindingsResult {
  const { event } = stored;
  return {
    id: event.id,
    status: event.status === 'ok' ? FindingsStatus.FINDINGS_STATUS_OK : FindingsStatus.FINDINGS_STATUS_ERROR,
    study: toStudyRef(event.study),
    model: event.model ? toModelRef(event.model) : undefined,
    findings: event.findings.map((f) => ({
      label: f.label,
      probability: f.probability,
      threshold: f.threshold,
      positive: f.positive,
    })),
    positives: [...event.positives],
    timing: {
      receivedAt: new Date(event.timing.receivedAt),
      completedAt: new Date(event.timing.completedAt),
      latencyMs: event.timing.latencyMs,
    },
    error: event.error ? { code: event.error.code, stage: event.error.stage, message: event.error.message } : undefined,
    storedAt: stored.storedAt,
  };
}

function toStudyRef(study: StudyInfo): StudyRef {
  return {
    studyUid: study.studyUid ?? '',
    seriesUid: study.seriesUid ?? '',
    sopInstanceUid: '',
    accession: study.accession ?? '',
    patientId: study.patientId ?? '',
    viewPosition: study.viewPosition ?? '',
    modality: '',
    bodyPart: '',
  };
}

/**
 * The event with its keys in the contract's order (docs/contract.md). The store keeps events as jsonb,
 * which reorders keys; REST clients get them back in the order the contract documents.
 */
export function contractOrder(event: FindingsEvent): FindingsEvent {
  return {
    schema: event.schema,
    id: event.id,
    status: event.status,
    study: pick(event.study, ['studyUid', 'seriesUid', 'accession', 'patientId', 'viewPosition']),
    ...(event.priority ? { priority: event.priority } : {}),
    model: event.model ? orderedModel(event.model) : null,
    findings: event.findings.map((f) => ({
      label: f.label,
      probability: f.probability,
      threshold: f.threshold,
      positive: f.positive,
    })),
    positives: [...event.positives],
    // Review assets (optional: events of older producers have neither).
    ...(event.wireImage !== undefined
      ? { wireImage: event.wireImage ? { uri: event.wireImage.uri, width: event.wireImage.width, height: event.wireImage.height } : null }
      : {}),
    ...(event.heatmaps ? { heatmaps: event.heatmaps.map((h) => ({ label: h.label, uri: h.uri })) } : {}),
    ...(event.activationMaps
      ? {
          activationMaps: {
            uri: event.activationMaps.uri,
            format: event.activationMaps.format,
            labels: [...event.activationMaps.labels],
            height: event.activationMaps.height,
            width: event.activationMaps.width,
            region: pick(event.activationMaps.region, ['top', 'left', 'height', 'width']),
          },
        }
      : {}),
    timing: {
      receivedAt: event.timing.receivedAt,
      completedAt: event.timing.completedAt,
      latencyMs: event.timing.latencyMs,
    },
    error: event.error ? { code: event.error.code, stage: event.error.stage, message: event.error.message } : null,
  };
}

function pick<T extends object, K extends keyof T>(value: T, keys: readonly K[]): T {
  const out = {} as T;
  for (const key of keys) if (value[key] !== undefined) out[key] = value[key];
  return out;
}
