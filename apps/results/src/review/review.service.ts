import { Inject, Injectable } from '@nestjs/common';
import type { FeedbackEvent, FindingsEvent, FindingsPriority, LabelFinding, ModelInfo } from '@thorax/contracts';
import { ResultsApiError } from '../api/api-error';
import { FindingsReader } from '../findings/findings-reader.service';
import { FEEDBACK_STORE, type FeedbackStore, REVIEW_QUERIES, type ReviewQueries } from '../store/results-store.port';
import { buildWorklist, priorityOf, referenceOf, type WorklistStudy } from './worklist';

export interface ReviewOptions {
  /** RESULTS_REVIEW_SHOW_PATIENT: accession and patient id on the page. */
  showPatient: boolean;
  /** RESULTS_REVIEW_WORKLIST_SIZE: newest results grouped into the worklist. */
  worklistSize: number;
}

export const REVIEW_OPTIONS = Symbol('thorax.results.review-options');

/** What the study view shows of one result (GET /v1/review/results/{id}). */
export interface ReviewResult {
  id: string;
  /** The study's opaque reference, as in the worklist. */
  ref: string;
  priority: FindingsPriority;
  viewPosition: string | null;
  model: ModelInfo;
  findings: LabelFinding[];
  positives: string[];
  /** The wire image's size; the pixels are at GET /v1/findings/{id}/image. Null: none kept. */
  wireImage: { width: number; height: number } | null;
  /** Positive labels with a heatmap at GET /v1/findings/{id}/heatmaps/{label} (the page's overlays). */
  heatmaps: string[];
  /** Every label with a heatmap there: all the model's labels when it kept activation maps, else `heatmaps`. */
  mapLabels: string[];
  timing: FindingsEvent['timing'];
  feedback: FeedbackEvent[];
  /** Only with RESULTS_REVIEW_SHOW_PATIENT=true. */
  studyUid?: string | null;
  accession?: string | null;
  patientId?: string | null;
}

/** The review page's read side: the worklist and one result with its verdicts. */
@Injectable()
export class ReviewService {
  constructor(
    @Inject(REVIEW_QUERIES) private readonly queries: ReviewQueries,
    @Inject(FEEDBACK_STORE) private readonly feedback: FeedbackStore,
    @Inject(REVIEW_OPTIONS) private readonly options: ReviewOptions,
    private readonly reader: FindingsReader,
  ) {}

  async worklist(limit: number): Promise<WorklistStudy[]> {
    const items = await this.queries.recent(this.options.worklistSize);
    return buildWorklist(items, { showPatient: this.options.showPatient, limit });
  }

  async result(id: string, modelVersion?: string): Promise<ReviewResult> {
    const { event } = await this.reader.get(id, modelVersion);
    if (event.status !== 'ok' || !event.model) throw new ResultsApiError('NOT_FOUND', `no reviewable result for ${JSON.stringify(id)} (it failed)`);
    const study = event.study;
    return {
      id: event.id,
      ref: referenceOf(study.studyUid || `image:${event.id}`),
      priority: priorityOf(event),
      viewPosition: study.viewPosition ?? null,
      model: event.model,
      findings: event.findings,
      positives: event.positives,
      wireImage: event.wireImage ? { width: event.wireImage.width, height: event.wireImage.height } : null,
      ...heatmapLabels(event),
      timing: event.timing,
      feedback: (await this.feedback.forResult(event.id, event.model.version)).map((f) => f.event),
      ...(this.options.showPatient
        ? { studyUid: study.studyUid ?? null, accession: study.accession ?? null, patientId: study.patientId ?? null }
        : {}),
    };
  }
}

/**
 * Which heatmaps a result has: from activation maps, every label of the model (the positive ones
 * are the page's overlays); from an older producer, the PNGs it stored (one per positive label).
 */
export function heatmapLabels(event: FindingsEvent): { heatmaps: string[]; mapLabels: string[] } {
  const maps = event.activationMaps;
  if (maps) return { heatmaps: event.positives.filter((l) => maps.labels.includes(l)), mapLabels: [...maps.labels] };
  const stored = (event.heatmaps ?? []).map((h) => h.label);
  return { heatmaps: stored, mapLabels: [...stored] };
}
