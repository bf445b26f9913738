import type { FindingsEvent, ModelInfo } from '@thorax/contracts';

export const STUDY_SCHEMA_ID = 'thorax.study.v1';

/** Why an image of a study did not count towards the study result. */
export type ExclusionReason =
  /** Its latest result is an error event: not analysed. */
  | 'error'
  /** A known view that is not frontal (lateral, oblique, decubitus…). */
  | 'not-frontal'
  /** No view position while other images of the study are known to be frontal. */
  | 'view-unknown'
  /** Analysed only by another model version than the study's. */
  | 'other-model-version';

export interface StudyImage {
  id: string;
  /** As the event carried it (DICOM View Position); null when unknown. */
  viewPosition: string | null;
  status: 'ok' | 'error';
  /** The model version of the result used for this image; null for errors before inference. */
  modelVersion: string | null;
  contributed: boolean;
  excluded: ExclusionReason | null;
  /** For images whose latest result is an error. */
  errorCode: string | null;
}

export interface StudyFinding {
  label: string;
  /** The maximum over the contributing images. */
  probability: number;
  threshold: number;
  positive: boolean;
  /** The image the maximum came from. */
  imageId: string;
}

/**
 * The study result: per label, the maximum probability over the study's frontal images, with
 * the images that contributed and why the others did not. Deterministic in its inputs, so a
 * redelivered event recomputes the same document and the stored version does not change.
 */
export interface StudyResult {
  schema: typeof STUDY_SCHEMA_ID;
  studyUid: string;
  accession: string | null;
  patientId: string | null;
  /** `ok` when at least one image contributed; `error` when none could (all failed or none frontal). */
  status: 'ok' | 'error';
  /** The model the study result is computed with: the one of the most recent ok result. */
  model: ModelInfo | null;
  /** In the model's label order; empty when no image contributed. */
  findings: StudyFinding[];
  positives: string[];
  contributingImages: string[];
  /** Every image seen for the study, sorted by id. */
  images: StudyImage[];
  timing: { firstReceivedAt: string; lastCompletedAt: string };
}

/** One stored result of the study, in store order (seq ascending). */
export interface StudyRow {
  seq: bigint;
  event: FindingsEvent;
}

const FRONTAL_VIEWS: ReadonlySet<string> = new Set(['PA', 'AP']);

export type ViewClass = 'frontal' | 'other' | 'unknown';

/** DICOM View Position (0018,5101): PA and AP are frontal; empty is unknown; anything else is not. */
export function classifyView(viewPosition: string | null | undefined): ViewClass {
  const view = (viewPosition ?? '').trim().toUpperCase();
  if (view === '') return 'unknown';
  return FRONTAL_VIEWS.has(view) ? 'frontal' : 'other';
}

/**
 * Aggregates the stored results of one study.
 *
 * - The study's model version is the one of the most recently stored ok result; each image
 *   counts with its result of that version.
 * - Frontal images (PA/AP) contribute. When no image of the study states a frontal view, images
 *   without a view position contribute instead (a PNG from a PACS export carries none); images
 *   with a known non-frontal view never do.
 * - Per label, the study probability is the maximum over the contributing images, positive when
 *   it reaches the model's threshold.
 */
export function aggregateStudy(studyUid: string, rows: readonly StudyRow[]): StudyResult {
  if (rows.length === 0) throw new Error(`no results for study ${studyUid}`);
  const bySeq = (a: StudyRow, b: StudyRow): number => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0);
  // The writer hands the rows in seq order already: sorted only when they are not.
  const ordered = rows.every((row, i) => i === 0 || bySeq(rows[i - 1] as StudyRow, row) < 0) ? rows : [...rows].sort(bySeq);
  const newestFirst = [...ordered].reverse();
  const newestOk = newestFirst.find((r) => r.event.status === 'ok');
  const model = newestOk?.event.model ?? null;

  // Per image: its result of the study's model version, else its latest result of any kind.
  const byImage = new Map<string, { chosen: FindingsEvent; latest: FindingsEvent }>();
  for (const { event } of ordered) {
    const entry = byImage.get(event.id);
    const ofStudyModel = event.status === 'ok' && model !== null && event.model?.version === model.version;
    if (!entry) byImage.set(event.id, { chosen: event, latest: event });
    else {
      entry.latest = event;
      const chosenMatches = entry.chosen.status === 'ok' && entry.chosen.model?.version === model?.version;
      if (ofStudyModel || !chosenMatches) entry.chosen = event;
    }
  }

  const candidates: { event: FindingsEvent; view: ViewClass }[] = [];
  const images: StudyImage[] = [];
  for (const [id, { chosen }] of [...byImage].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const usable = chosen.status === 'ok' && model !== null && chosen.model?.version === model.version;
    const image: StudyImage = {
      id,
      viewPosition: chosen.study.viewPosition || null,
      status: chosen.status,
      modelVersion: chosen.model?.version ?? null,
      contributed: false,
      excluded: chosen.status === 'error' ? 'error' : usable ? null : 'other-model-version',
      errorCode: chosen.error?.code ?? null,
    };
    images.push(image);
    if (usable) candidates.push({ event: chosen, view: classifyView(chosen.study.viewPosition) });
  }

  const anyFrontal = candidates.some((c) => c.view === 'frontal');
  const contributing = candidates.filter((c) => c.view === (anyFrontal ? 'frontal' : 'unknown'));
  const contributingIds = new Set(contributing.map((c) => c.event.id));
  for (const image of images) {
    if (image.excluded !== null) continue;
    if (contributingIds.has(image.id)) image.contributed = true;
    else image.excluded = classifyView(image.viewPosition) === 'other' ? 'not-frontal' : 'view-unknown';
  }

  const findings: StudyFinding[] = [];
  const first = contributing[0];
  if (first) {
    for (const [index, labelFinding] of first.event.findings.entries()) {
      let best = { probability: labelFinding.probability, threshold: labelFinding.threshold, imageId: first.event.id };
      for (const { event } of contributing.slice(1)) {
        const other = event.findings[index]?.label === labelFinding.label ? event.findings[index] : event.findings.find((f) => f.label === labelFinding.label);
        if (other && other.probability > best.probability) best = { probability: other.probability, threshold: other.threshold, imageId: event.id };
      }
      findings.push({ label: labelFinding.label, ...best, positive: best.probability >= best.threshold });
    }
  }

  const latestWith = (pick: (e: FindingsEvent) => string | null | undefined): string | null => {
    for (const { event } of newestFirst) {
      const value = pick(event);
      if (value) return value;
    }
    return null;
  };
  const received = byTime(ordered.map((r) => r.event.timing.receivedAt));
  const completed = byTime(ordered.map((r) => r.event.timing.completedAt));

  return {
    schema: STUDY_SCHEMA_ID,
    studyUid,
    accession: latestWith((e) => e.study.accession),
    patientId: latestWith((e) => e.study.patientId),
    status: contributing.length > 0 ? 'ok' : 'error',
    model,
    findings,
    positives: findings.filter((f) => f.positive).map((f) => f.label),
    contributingImages: [...contributingIds].sort(),
    images,
    timing: { firstReceivedAt: received[0] ?? '', lastCompletedAt: completed[completed.length - 1] ?? '' },
  };
}

/** Timestamps in time order (a stable sort: equal instants keep their order), each parsed once. */
function byTime(values: readonly string[]): string[] {
  return values
    .map((value, index) => ({ value, index, at: Date.parse(value) }))
    .sort((a, b) => a.at - b.at || a.index - b.index)
    .map((entry) => entry.value);
}
