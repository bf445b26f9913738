import type { ResultsStore, StoreHealth } from './results-store.port';
import type { SqlClient, SqlExecutor } from './sql-client';
import { SqlFeedbackStore } from './sql-feedback-store';
import { SqlFhirOutbox } from './sql-fhir-outbox';
import { SqlFindingsFeed } from './sql-findings-feed';
import { SqlFindingsQueries } from './sql-findings-queries';
import { SqlFindingsWriter } from './sql-findings-writer';
import { SqlReviewQueries } from './sql-review-queries';
import { SqlStudyQueries } from './sql-study-queries';
import { StoredSignal } from './stored-signal';

export class SqlStoreHealth implements StoreHealth {
  constructor(private readonly db: SqlExecutor) {}

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }
}

/** Every port of the results store over one engine (PGlite or a PostgreSQL server). */
export function sqlResultsStore(db: SqlClient): ResultsStore {
  const signal = new StoredSignal();
  const outbox = new SqlFhirOutbox(db);
  return {
    writer: new SqlFindingsWriter(db, signal),
    findings: new SqlFindingsQueries(db),
    feed: new SqlFindingsFeed(db, signal),
    studies: new SqlStudyQueries(db),
    outbox,
    outboxControl: outbox,
    feedback: new SqlFeedbackStore(db),
    review: new SqlReviewQueries(db),
    health: new SqlStoreHealth(db),
  };
}
