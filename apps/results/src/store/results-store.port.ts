import type { FeedbackEvent, FeedbackVerdict, FindingsEvent } from '@thorax/contracts';
import type { StudyResult } from '../domain/study-aggregate';

/**
 * The results store, as small ports by responsibility (one SQL adapter each, store/sql-*.ts):
 * writing findings (FindingsWriter), reading them (FindingsQueries), following new ones
 * (FindingsFeed), reading study aggregates (StudyQueries), the FHIR topic's outbox state
 * (FhirOutbox) and readiness (StoreHealth). Services depend on the port they use, never on SQL.
 */

/** A findings event as the store holds it. */
export interface StoredFindings {
  /** The store's sequence number: newest-first order, page and watch cursors. */
  seq: bigint;
  event: FindingsEvent;
  storedAt: Date;
}

/** A study aggregate as the store holds it. */
export interface StoredStudy {
  /** Newest-first order and page cursor of studies; moves when the aggregate changes. */
  seq: bigint;
  /** 1 for the first aggregate, +1 each time it changes (FHIR meta.versionId). */
  version: number;
  /** The last version published to the FHIR topic (0: none yet). */
  publishedVersion: number;
  updatedAt: Date;
  result: StudyResult;
}

/**
 * What storing one event did:
 * - `stored`: a new (image id, model version) row;
 * - `replaced`: an error row for that key was superseded (a newer error, or an ok result);
 * - `duplicate`: the same result was already stored (a redelivery) and nothing changed;
 * - `rejected`: the database can never store this event (e.g. jsonb refuses a \u0000); its
 *   batch mates are stored all the same. `error` is the database's error (store-errors.ts).
 */
export type StoreOutcome =
  | {
      kind: 'stored' | 'replaced';
      record: StoredFindings;
      /** The study aggregate when this result changed it; null when unchanged or without a study. */
      study: StoredStudy | null;
    }
  | { kind: 'duplicate' }
  | { kind: 'rejected'; error: unknown };

export interface FindingsWriter {
  /**
   * Stores events idempotently in one transaction, keyed by (id, model version or '' without a
   * model); resolves with one outcome per event, in order, once the rows are durable. An ok row
   * is never overwritten; an error row is replaced by a different event for the same key (later
   * events of the batch see earlier ones, as if stored one by one). The aggregates of the
   * studies whose results changed are recomputed in the same transaction. An event the database
   * rejects gets its own `rejected` outcome; any other failure (store away) rejects the call.
   * `eventJson[i]`, when given, is event i as it was received (the JSON it was decoded and
   * validated from): stored as it is rather than serialised again.
   */
  store(events: readonly FindingsEvent[], eventJson?: readonly (string | undefined)[]): Promise<StoreOutcome[]>;
}

export interface FindingsFilter {
  studyUid?: string;
  accession?: string;
  status?: FindingsEvent['status'];
  /** Only results where this label is positive. */
  positiveLabel?: string;
  /** Only results completed at or after this time (timing.completedAt). */
  from?: Date;
  /** Only results completed before this time. */
  to?: Date;
}

export interface FindingsListQuery extends FindingsFilter {
  /** Page size, at least 1. */
  limit: number;
  /** Only rows older than this sequence (the previous page's cursor). */
  before?: bigint;
}

export interface FindingsPage {
  /** Newest first. */
  items: StoredFindings[];
  /** Pass as `before` for the next page; null on the last page. */
  next: bigint | null;
}

export interface FindingsQueries {
  /** The latest stored result of an image (highest seq), or the one of a model version. */
  get(id: string, modelVersion?: string): Promise<StoredFindings | null>;
  list(query: FindingsListQuery): Promise<FindingsPage>;
}

/** The change feed behind WatchFindings. */
export interface FindingsFeed {
  /** Rows stored after a sequence, oldest first (watch catch-up). */
  after(seq: bigint, limit: number): Promise<StoredFindings[]>;
  /** The highest sequence stored so far (0 when empty). */
  latestSeq(): Promise<bigint>;
  /** Called in-process after each committed batch with a stored or replaced row; returns the unsubscribe function. */
  onStored(listener: () => void): () => void;
}

export interface StudyListQuery {
  studyUid?: string;
  /** The study's FHIR id (DiagnosticReport and ImagingStudy). */
  resourceId?: string;
  accession?: string;
  /** Either the study key or the accession equals this value. */
  studyUidOrAccession?: string;
  patientId?: string;
  limit: number;
  /** Only studies older than this sequence (the previous page's cursor). */
  before?: bigint;
}

export interface StudyPage {
  /** Most recently changed first. */
  items: StoredStudy[];
  next: bigint | null;
}

export interface StudyQueries {
  /** A study's aggregate by Study Instance UID, or by its FHIR resource id. */
  get(by: { studyUid: string } | { resourceId: string }): Promise<StoredStudy | null>;
  list(query: StudyListQuery): Promise<StudyPage>;
  /** A study computed with the model behind a FHIR Device id (the Device is read from it). */
  byDevice(deviceId: string): Promise<StoredStudy | null>;
}

/** The store as the outbox of the thorax.fhir.v1 topic (docs/contract.md). */
export interface FhirOutbox {
  /** Those of the studies whose current version has not gone out yet, in the order asked. */
  unpublished(studyUids: readonly string[]): Promise<StoredStudy[]>;
  /** Marks study versions as published (a study's published version never moves backwards). */
  markPublished(versions: readonly { studyUid: string; version: number }[]): Promise<void>;
  /**
   * Studies whose current version has not gone out and that no result has changed for `quietMs`
   * (study grouping: a study's instances arrive over several requests or associations), oldest
   * first, at most `limit`.
   */
  settled(quietMs: number, limit: number): Promise<string[]>;
}

/** The right to publish the FHIR topic, held by one process at a time. */
export interface OutboxOwnership {
  /** Settles when the ownership is gone without `release` (the database connection was lost). */
  readonly lost: Promise<unknown>;
  release(): Promise<void>;
}

/**
 * What the exactly-once relay of the FHIR topic needs beyond FhirOutbox: exclusive ownership
 * (an advisory lock of a PostgreSQL session; the embedded store has one process anyway) and the
 * reconciliation of the outbox with what the topic already holds.
 */
export interface FhirOutboxControl {
  /** Takes ownership unless another process holds it (null then). */
  own(): Promise<OutboxOwnership | null>;
  /** When the oldest study version not marked published was stored; null when none is pending. */
  oldestUnpublishedAt(): Promise<Date | null>;
  /**
   * Marks versions found on the topic as published: a row moves only forward and never past its
   * stored version. Returns how many studies moved.
   */
  markFound(versions: readonly { studyUid: string; version: number }[]): Promise<number>;
}

/** A reviewer's verdict on one label of one stored result. */
export interface FeedbackInput {
  /** The reviewed result (its event supplies study, model and what the model said). */
  result: FindingsEvent;
  label: string;
  reviewer: string;
  verdict: FeedbackVerdict;
  comment: string | null;
}

/** A verdict as the store holds it: the thorax.feedback.v1 event of its current revision. */
export interface StoredFeedback {
  event: FeedbackEvent;
  /** The last revision sent to the feedback topic (0: none yet). */
  publishedRevision: number;
}

/** Reviewers' verdicts, and the store as the outbox of the thorax.feedback.v1 topic. */
export interface FeedbackStore {
  /**
   * Stores the verdict, keyed by (image id, model version, label, reviewer). The same verdict and
   * comment again changes nothing (`changed: false`, same revision); a different one is a new
   * revision of the same row.
   */
  record(input: FeedbackInput): Promise<{ feedback: StoredFeedback; changed: boolean }>;
  /** Every reviewer's current verdicts on a result, by label then reviewer. */
  forResult(imageId: string, modelVersion: string): Promise<StoredFeedback[]>;
  /**
   * Verdicts whose current revision has not gone out yet and that changed at least `settledMs`
   * ago (the request that stored a revision publishes it itself), oldest change first.
   */
  unpublished(limit: number, settledMs?: number): Promise<StoredFeedback[]>;
  /** Marks revisions as published (a row's published revision never moves backwards). */
  markPublished(events: readonly FeedbackEvent[]): Promise<void>;
}

/** One reviewable result in the review worklist (newest stored first). */
export interface ReviewItem {
  seq: bigint;
  event: FindingsEvent;
  /** Labels of it that have at least one verdict. */
  reviewedLabels: string[];
}

export interface ReviewQueries {
  /** The latest ok result of each of the most recently stored images, newest first. */
  recent(limit: number): Promise<ReviewItem[]>;
}

export interface StoreHealth {
  /** Throws unless the store answers (readiness). */
  ping(): Promise<void>;
}

/** Every port over one store: what the store module provides, and what tests build. */
export interface ResultsStore {
  writer: FindingsWriter;
  findings: FindingsQueries;
  feed: FindingsFeed;
  studies: StudyQueries;
  outbox: FhirOutbox;
  outboxControl: FhirOutboxControl;
  feedback: FeedbackStore;
  review: ReviewQueries;
  health: StoreHealth;
}

export const FINDINGS_WRITER = Symbol('thorax.results.findings-writer');
export const FINDINGS_QUERIES = Symbol('thorax.results.findings-queries');
export const FINDINGS_FEED = Symbol('thorax.results.findings-feed');
export const STUDY_QUERIES = Symbol('thorax.results.study-queries');
export const FHIR_OUTBOX = Symbol('thorax.results.fhir-outbox');
export const FHIR_OUTBOX_CONTROL = Symbol('thorax.results.fhir-outbox-control');
export const STORE_HEALTH = Symbol('thorax.results.store-health');
export const FEEDBACK_STORE = Symbol('thorax.results.feedback-store');
export const REVIEW_QUERIES = Symbol('thorax.results.review-queries');
