import type { FindingsEvent } from '@thorax/contracts';
import type { StudyResult } from '../studies/study-aggregate';

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
 * What storing did:
 * - `stored`: a new (image id, model version) row;
 * - `replaced`: an error row for that key was superseded (a newer error, or an ok result);
 * - `duplicate`: the same result was already stored (a redelivery) and nothing changed.
 */
export type StoreOutcome =
  | {
      kind: 'stored' | 'replaced';
      record: StoredFindings;
      /** The study aggregate when this result changed it; null when unchanged or without a study. */
      study: StoredStudy | null;
    }
  | { kind: 'duplicate' };

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

export interface FindingsPage {
  /** Newest first. */
  items: StoredFindings[];
  /** Pass as `before` for the next page; null on the last page. */
  next: bigint | null;
}

/** The results store port. Adapters: SqlFindingsRepository over PGlite or a PostgreSQL server. */
export interface FindingsRepository {
  /**
   * Stores an event idempotently, keyed by (id, model version or '' without a model). Resolves
   * once the row is durable. An ok row is never overwritten; an error row is replaced by a
   * different event for the same key. A new or replaced row recomputes its study's aggregate
   * in the same transaction.
   */
  store(event: FindingsEvent): Promise<StoreOutcome>;
  /** The latest stored result of an image (highest seq), or the one of a model version. */
  get(id: string, modelVersion?: string): Promise<StoredFindings | null>;
  list(query: FindingsListQuery): Promise<FindingsPage>;
  /** Rows stored after a sequence, oldest first (watch catch-up). */
  after(seq: bigint, limit: number): Promise<StoredFindings[]>;
  /** The highest sequence stored so far (0 when empty). */
  latestSeq(): Promise<bigint>;
  /** A study's aggregate by Study Instance UID, or by its FHIR resource id. */
  getStudy(by: { studyUid: string } | { resourceId: string }): Promise<StoredStudy | null>;
  listStudies(query: StudyListQuery): Promise<StudyPage>;
  /** A study computed with the model behind a FHIR Device id (the Device is read from it). */
  studyByDevice(deviceId: string): Promise<StoredStudy | null>;
  /** Marks a study version as published to the FHIR topic. */
  markPublished(studyUid: string, version: number): Promise<void>;
  /** Called in-process after each stored or replaced row; returns the unsubscribe function. */
  onStored(listener: (record: StoredFindings) => void): () => void;
  /** Throws unless the store answers (readiness). */
  ping(): Promise<void>;
}

export const FINDINGS_REPOSITORY = Symbol('thorax.results.findings-repository');
