import type { FindingsEvent } from '@thorax/contracts';
import type { ReviewItem, ReviewQueries } from './results-store.port';
import type { SqlExecutor } from './sql-client';

interface ReviewRow {
  seq: string | number;
  event: FindingsEvent | string;
  reviewed: string[] | null;
}

/**
 * The worklist's source: the newest ok result of each recently stored image (one model version
 * per image: the latest stored), with the labels reviewers have already given a verdict on.
 */
export class SqlReviewQueries implements ReviewQueries {
  constructor(private readonly db: SqlExecutor) {}

  async recent(limit: number): Promise<ReviewItem[]> {
    const rows = await this.db.query<ReviewRow>(
      `SELECT latest.seq, latest.event,
              (SELECT array_agg(DISTINCT r.label) FROM review_feedback r
                WHERE r.image_id = latest.image_id AND r.model_version = latest.model_version) AS reviewed
         FROM (SELECT DISTINCT ON (image_id) seq, image_id, model_version, event
                 FROM (SELECT seq, image_id, model_version, event FROM findings_results
                        WHERE status = 'ok' ORDER BY seq DESC LIMIT $1 * 4) newest
                ORDER BY image_id, seq DESC) latest
        ORDER BY latest.seq DESC
        LIMIT $1`,
      [limit],
    );
    return rows.map((row) => ({
      seq: BigInt(row.seq),
      event: typeof row.event === 'string' ? (JSON.parse(row.event) as FindingsEvent) : row.event,
      reviewedLabels: row.reviewed ?? [],
    }));
  }
}
