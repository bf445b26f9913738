import { FindingsStatus, orderedModel, type StudyResult as StudyResultMessage, toModelRef } from '@thorax/contracts';
import type { StoredStudy } from '../store/results-store.port';
import type { StudyResult } from '../domain/study-aggregate';

/** The REST body of GET /v1/studies/{studyUid}: the aggregate plus its version and time. */
export interface StudyBody extends StudyResult {
  version: number;
  updatedAt: string;
}

export function toStudyBody(stored: StoredStudy): StudyBody {
  const r = stored.result;
  return {
    schema: r.schema,
    studyUid: r.studyUid,
    accession: r.accession,
    patientId: r.patientId,
    status: r.status,
    model: r.model ? orderedModel(r.model, { provider: false }) : null,
    findings: r.findings.map((f) => ({ label: f.label, probability: f.probability, threshold: f.threshold, positive: f.positive, imageId: f.imageId })),
    positives: [...r.positives],
    contributingImages: [...r.contributingImages],
    images: r.images.map((i) => ({
      id: i.id,
      viewPosition: i.viewPosition,
      status: i.status,
      modelVersion: i.modelVersion,
      contributed: i.contributed,
      excluded: i.excluded,
      errorCode: i.errorCode,
    })),
    timing: { firstReceivedAt: r.timing.firstReceivedAt, lastCompletedAt: r.timing.lastCompletedAt },
    version: stored.version,
    updatedAt: stored.updatedAt.toISOString(),
  };
}

const status = (value: 'ok' | 'error'): FindingsStatus =>
  value === 'ok' ? FindingsStatus.FINDINGS_STATUS_OK : FindingsStatus.FINDINGS_STATUS_ERROR;

/** The gRPC StudyResult message (thorax/v1/results_service.proto). */
export function toStudyMessage(stored: StoredStudy): StudyResultMessage {
  const r = stored.result;
  const time = (iso: string): Date | undefined => (iso ? new Date(iso) : undefined);
  return {
    studyUid: r.studyUid,
    accession: r.accession ?? '',
    patientId: r.patientId ?? '',
    status: status(r.status),
    model: r.model ? toModelRef(r.model) : undefined,
    findings: r.findings.map((f) => ({ label: f.label, probability: f.probability, threshold: f.threshold, positive: f.positive, imageId: f.imageId })),
    positives: [...r.positives],
    contributingImages: [...r.contributingImages],
    images: r.images.map((i) => ({
      id: i.id,
      viewPosition: i.viewPosition ?? '',
      status: status(i.status),
      modelVersion: i.modelVersion ?? '',
      contributed: i.contributed,
      excluded: i.excluded ?? '',
      errorCode: i.errorCode ?? '',
    })),
    firstReceivedAt: time(r.timing.firstReceivedAt),
    lastCompletedAt: time(r.timing.lastCompletedAt),
    version: stored.version,
    updatedAt: stored.updatedAt,
  };
}
