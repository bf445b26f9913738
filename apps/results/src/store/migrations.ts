import type { SqlClient } from './sql-client';

/** One numbered schema change. Applied once, in order, never edited after release. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The results schema, PostgreSQL dialect, the same for PGlite and a PostgreSQL server.
 *
 * findings_results holds one row per (image id, model version). Results without a model (error
 * events from stages before inference) use the empty string as their model version. `seq` is the
 * store's monotonically increasing sequence: the newest-first order of lists, the cursor of
 * WatchFindings, and what "latest result of an image" means.
 *
 * study_results holds one row per Study Instance UID: the study aggregate (studies/study-aggregate.ts)
 * recomputed in the transaction that stores a new result of the study. `version` grows only when
 * the aggregate changes (a redelivery changes nothing); `seq` orders studies like findings.
 * `resource_id` is the study's FHIR id, `device_id` the FHIR Device id of its model.
 * `published_version` is the last version sent to the thorax.fhir.v1 topic (an outbox marker).
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'findings_results',
    sql: `
      CREATE TABLE findings_results (
        seq           bigserial   PRIMARY KEY,
        image_id      text        NOT NULL,
        model_version text        NOT NULL,
        status        text        NOT NULL CHECK (status IN ('ok', 'error')),
        model_name    text,
        study_uid     text,
        accession     text,
        error_code    text,
        error_stage   text,
        positives     text[]      NOT NULL DEFAULT '{}',
        received_at   timestamptz NOT NULL,
        completed_at  timestamptz NOT NULL,
        stored_at     timestamptz NOT NULL DEFAULT now(),
        event         jsonb       NOT NULL,
        CONSTRAINT findings_results_image_model_key UNIQUE (image_id, model_version)
      );
      CREATE INDEX findings_results_image_seq_idx ON findings_results (image_id, seq DESC);
      CREATE INDEX findings_results_study_seq_idx ON findings_results (study_uid, seq DESC);
      CREATE INDEX findings_results_accession_seq_idx ON findings_results (accession, seq DESC);
      CREATE INDEX findings_results_status_seq_idx ON findings_results (status, seq DESC);
      CREATE INDEX findings_results_positives_idx ON findings_results USING gin (positives);
    `,
  },
  {
    version: 2,
    name: 'study_results',
    sql: `
      CREATE INDEX findings_results_completed_idx ON findings_results (completed_at);
      CREATE SEQUENCE study_results_seq AS bigint;
      CREATE TABLE study_results (
        study_uid     text        PRIMARY KEY,
        resource_id   text        NOT NULL UNIQUE,
        seq           bigint      NOT NULL DEFAULT nextval('study_results_seq') UNIQUE,
        version       integer     NOT NULL DEFAULT 1,
        status        text        NOT NULL CHECK (status IN ('ok', 'error')),
        accession     text,
        patient_id    text,
        device_id     text,
        positives     text[]      NOT NULL DEFAULT '{}',
        updated_at    timestamptz NOT NULL DEFAULT now(),
        result        jsonb       NOT NULL
      );
      CREATE INDEX study_results_accession_seq_idx ON study_results (accession, seq DESC);
      CREATE INDEX study_results_patient_seq_idx ON study_results (patient_id, seq DESC);
      CREATE INDEX study_results_device_idx ON study_results (device_id);
    `,
  },
  {
    version: 3,
    name: 'study_results_published_version',
    sql: `
      ALTER TABLE study_results ADD COLUMN published_version integer NOT NULL DEFAULT 0;
      CREATE INDEX study_results_unpublished_idx ON study_results (seq) WHERE published_version < version;
    `,
  },
  {
    // Reviewers' verdicts (docs/review.md): one row per (image, model version, label, reviewer),
    // updated in place; `revision` grows with each change and `published_revision` is the last
    // one sent to thorax.feedback.v1 (an outbox marker, as study_results.published_version). What
    // the model said is copied in, so the feedback event needs no join. No patient identifiers.
    version: 4,
    name: 'review_feedback',
    sql: `
      CREATE TABLE review_feedback (
        image_id           text             NOT NULL,
        model_version      text             NOT NULL,
        label              text             NOT NULL,
        reviewer           text             NOT NULL,
        verdict            text             NOT NULL CHECK (verdict IN ('agree', 'disagree')),
        comment            text,
        study_uid          text,
        model_name         text             NOT NULL,
        model_sha256       text             NOT NULL,
        probability        double precision NOT NULL,
        threshold          double precision NOT NULL,
        positive           boolean          NOT NULL,
        revision           integer          NOT NULL DEFAULT 1,
        published_revision integer          NOT NULL DEFAULT 0,
        created_at         timestamptz      NOT NULL DEFAULT now(),
        updated_at         timestamptz      NOT NULL DEFAULT now(),
        PRIMARY KEY (image_id, model_version, label, reviewer)
      );
      CREATE INDEX review_feedback_unpublished_idx ON review_feedback (updated_at) WHERE published_revision < revision;
    `,
  },
];

/** Serialises concurrent starts of several replicas on one server (any fixed 64-bit number). */
const MIGRATION_LOCK = '7305918450213397761';

/**
 * Brings the schema up to date in one transaction (all pending migrations or none), under an
 * advisory lock so replicas starting together do not race. Returns the versions it applied.
 */
export async function migrate(db: SqlClient, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  const ordered = [...migrations].sort((a, b) => a.version - b.version);
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1::text::bigint)', [MIGRATION_LOCK]);
    await tx.exec(`
      CREATE TABLE IF NOT EXISTS results_schema_migrations (
        version    integer     PRIMARY KEY,
        name       text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    const rows = await tx.query<{ version: number | string }>('SELECT version FROM results_schema_migrations');
    const applied = new Set(rows.map((r) => Number(r.version)));
    const done: number[] = [];
    for (const migration of ordered) {
      if (applied.has(migration.version)) continue;
      await tx.exec(migration.sql);
      await tx.query('INSERT INTO results_schema_migrations (version, name) VALUES ($1, $2)', [
        migration.version,
        migration.name,
      ]);
      done.push(migration.version);
    }
    return done;
  });
}
