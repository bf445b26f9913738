import { FEEDBACK_SCHEMA_ID, type FeedbackEvent, type FeedbackVerdict } from '@thorax/contracts';
import type { FeedbackInput, FeedbackStore, StoredFeedback } from './results-store.port';
import type { SqlClient } from './sql-client';
import { toDate } from './sql-rows';

interface FeedbackRow {
  image_id: string;
  model_version: string;
  label: string;
  reviewer: string;
  verdict: FeedbackVerdict;
  comment: string | null;
  study_uid: string | null;
  model_name: string;
  model_sha256: string;
  probability: number | string;
  threshold: number | string;
  positive: boolean;
  revision: number | string;
  published_revision: number | string;
  updated_at: Date | string;
}

const COLUMNS = `image_id, model_version, label, reviewer, verdict, comment, study_uid, model_name, model_sha256,
  probability, threshold, positive, revision, published_revision, updated_at`;

/**
 * Upsert of one verdict: a changed verdict or comment is a new revision of the row; the same one
 * again matches no row of the DO UPDATE (RETURNING is empty) and the stored row is read instead.
 */
const UPSERT = `
  INSERT INTO review_feedback (image_id, model_version, label, reviewer, verdict, comment, study_uid, model_name,
    model_sha256, probability, threshold, positive)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
  ON CONFLICT (image_id, model_version, label, reviewer) DO UPDATE
    SET verdict = EXCLUDED.verdict, comment = EXCLUDED.comment, revision = review_feedback.revision + 1, updated_at = now()
    WHERE review_feedback.verdict IS DISTINCT FROM EXCLUDED.verdict OR review_feedback.comment IS DISTINCT FROM EXCLUDED.comment
  RETURNING ${COLUMNS}`;

function toStoredFeedback(row: FeedbackRow): StoredFeedback {
  const event: FeedbackEvent = {
    schema: FEEDBACK_SCHEMA_ID,
    id: row.image_id,
    studyUid: row.study_uid,
    model: { name: row.model_name, version: row.model_version, sha256: row.model_sha256 },
    label: row.label,
    probability: Number(row.probability),
    threshold: Number(row.threshold),
    positive: row.positive,
    verdict: row.verdict,
    comment: row.comment,
    reviewer: row.reviewer,
    revision: Number(row.revision),
    reviewedAt: toDate(row.updated_at).toISOString(),
  };
  return { event, publishedRevision: Number(row.published_revision) };
}

export class SqlFeedbackStore implements FeedbackStore {
  constructor(private readonly db: SqlClient) {}

  async record(input: FeedbackInput): Promise<{ feedback: StoredFeedback; changed: boolean }> {
    const { result } = input;
    const finding = result.findings.find((f) => f.label === input.label);
    if (!result.model || !finding) throw new Error(`result ${result.id} has no model finding for ${input.label}`);
    const key = [result.id, result.model.version, input.label, input.reviewer];
    return this.db.transaction(async (tx) => {
      const [written] = await tx.query<FeedbackRow>(UPSERT, [
        ...key,
        input.verdict,
        input.comment,
        result.study.studyUid ?? null,
        result.model?.name,
        result.model?.sha256,
        finding.probability,
        finding.threshold,
        finding.positive,
      ]);
      if (written) return { feedback: toStoredFeedback(written), changed: true };
      const [stored] = await tx.query<FeedbackRow>(
        `SELECT ${COLUMNS} FROM review_feedback WHERE image_id = $1 AND model_version = $2 AND label = $3 AND reviewer = $4`,
        key,
      );
      if (!stored) throw new Error('feedback row vanished inside its transaction');
      return { feedback: toStoredFeedback(stored), changed: false };
    });
  }

  async forResult(imageId: string, modelVersion: string): Promise<StoredFeedback[]> {
    const rows = await this.db.query<FeedbackRow>(
      `SELECT ${COLUMNS} FROM review_feedback WHERE image_id = $1 AND model_version = $2 ORDER BY label, reviewer`,
      [imageId, modelVersion],
    );
    return rows.map(toStoredFeedback);
  }

  async unpublished(limit: number, settledMs = 0): Promise<StoredFeedback[]> {
    const rows = await this.db.query<FeedbackRow>(
      `SELECT ${COLUMNS} FROM review_feedback
        WHERE published_revision < revision AND updated_at <= now() - $2::double precision * interval '1 millisecond'
        ORDER BY updated_at LIMIT $1`,
      [limit, settledMs],
    );
    return rows.map(toStoredFeedback);
  }

  async markPublished(events: readonly FeedbackEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.db.query(
      `UPDATE review_feedback AS r SET published_revision = GREATEST(r.published_revision, p.revision)
       FROM jsonb_to_recordset($1::jsonb) AS p(image_id text, model_version text, label text, reviewer text, revision integer)
       WHERE r.image_id = p.image_id AND r.model_version = p.model_version AND r.label = p.label AND r.reviewer = p.reviewer`,
      [JSON.stringify(events.map((e) => ({ image_id: e.id, model_version: e.model.version, label: e.label, reviewer: e.reviewer, revision: e.revision })))],
    );
  }
}
