import { createHash } from 'node:crypto';
import type { FindingsEvent, FindingsPriority } from '@thorax/contracts';
import type { ReviewItem } from '../store/results-store.port';

/** One image of a worklist study. */
export interface WorklistImage {
  id: string;
  viewPosition: string | null;
  positives: string[];
  /** Labels that already have a reviewer's verdict. */
  reviewedLabels: string[];
  completedAt: string;
}

/** One row of the review worklist: a study (or a lone image without a Study Instance UID). */
export interface WorklistStudy {
  /** Short opaque reference shown instead of identifiers (first 10 hex digits of SHA-256 of the key). */
  ref: string;
  priority: FindingsPriority;
  /** Union of the images' positive labels, in the model's label order. */
  positives: string[];
  images: WorklistImage[];
  /** Latest completion time of its images. */
  completedAt: string;
  model: { name: string; version: string } | null;
  /** Only with RESULTS_REVIEW_SHOW_PATIENT=true. */
  studyUid?: string | null;
  accession?: string | null;
  patientId?: string | null;
}

export function referenceOf(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex').slice(0, 10).toUpperCase();
}

export const priorityOf = (event: FindingsEvent): FindingsPriority => event.priority ?? 'routine';

/**
 * Groups the newest results into studies and orders them for reading: STAT first, then studies
 * with a positive finding, then the most recently completed.
 */
export function buildWorklist(items: readonly ReviewItem[], options: { showPatient: boolean; limit: number }): WorklistStudy[] {
  const byKey = new Map<string, { events: ReviewItem[] }>();
  for (const item of items) {
    const key = item.event.study.studyUid || `image:${item.event.id}`;
    const group = byKey.get(key) ?? { events: [] };
    group.events.push(item);
    byKey.set(key, group);
  }
  const studies = [...byKey].map(([key, { events }]): WorklistStudy => {
    const newest = events.reduce((a, b) => (a.event.timing.completedAt >= b.event.timing.completedAt ? a : b));
    const labelOrder = newest.event.findings.map((f) => f.label);
    const positives = new Set(events.flatMap((e) => e.event.positives));
    const ordered = [...labelOrder.filter((l) => positives.has(l)), ...[...positives].filter((l) => !labelOrder.includes(l))];
    const study = newest.event.study;
    return {
      ref: referenceOf(key),
      priority: events.some((e) => priorityOf(e.event) === 'stat') ? 'stat' : 'routine',
      positives: ordered,
      images: events
        .map((e) => ({
          id: e.event.id,
          viewPosition: e.event.study.viewPosition ?? null,
          positives: [...e.event.positives],
          reviewedLabels: [...e.reviewedLabels].sort(),
          completedAt: e.event.timing.completedAt,
        }))
        .sort((a, b) => a.completedAt.localeCompare(b.completedAt)),
      completedAt: newest.event.timing.completedAt,
      model: newest.event.model ? { name: newest.event.model.name, version: newest.event.model.version } : null,
      ...(options.showPatient
        ? { studyUid: study.studyUid ?? null, accession: study.accession ?? null, patientId: study.patientId ?? null }
        : {}),
    };
  });
  studies.sort(
    (a, b) =>
      Number(b.priority === 'stat') - Number(a.priority === 'stat') ||
      Number(b.positives.length > 0) - Number(a.positives.length > 0) ||
      b.completedAt.localeCompare(a.completedAt),
  );
  return studies.slice(0, options.limit);
}
