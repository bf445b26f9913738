import {
  type DynamicModule,
  Global,
  Inject,
  Injectable,
  Module,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { HealthRegistry, healthy, LOGGER, type Logger, unhealthy } from '@thorax/observability';
import { migrate } from './migrations';
import { PgSqlClient } from './pg-sql-client';
import { PgliteSqlClient } from './pglite-sql-client';
import {
  FEEDBACK_STORE,
  FHIR_OUTBOX,
  FHIR_OUTBOX_CONTROL,
  FINDINGS_FEED,
  FINDINGS_QUERIES,
  FINDINGS_WRITER,
  REVIEW_QUERIES,
  type ResultsStore,
  STORE_HEALTH,
  type StoreHealth,
  STUDY_QUERIES,
} from './results-store.port';
import type { SqlClient } from './sql-client';
import { backfillStudyAggregates } from './sql-findings-writer';
import { sqlResultsStore } from './sql-results-store';

export interface StoreOptions {
  /** A PostgreSQL server; when absent, the embedded PGlite store in `dataDir`. */
  databaseUrl?: string | undefined;
  dataDir: string;
  poolSize: number;
}

const SQL_CLIENT = Symbol('thorax.results.sql-client');
const RESULTS_STORE = Symbol('thorax.results.store');

/** Opens the configured engine and brings its schema up to date. */
export async function openStore(options: StoreOptions, log: Logger): Promise<SqlClient> {
  const db = options.databaseUrl
    ? await PgSqlClient.connect({
        connectionString: options.databaseUrl,
        max: options.poolSize,
        onIdleError: (error) => log.warn({ err: error }, 'idle database connection failed'),
        onClientError: (error) => log.warn({ reason: error.message }, 'database connection dropped during a transaction; it is retried'),
      })
    : await PgliteSqlClient.open(options.dataDir);
  try {
    const applied = await migrate(db);
    const backfilled = await backfillStudyAggregates(db);
    if (backfilled > 0) log.info({ studies: backfilled }, 'study aggregates computed for results stored before them');
    log.info(
      { engine: db.engine, ...(db.engine === 'pglite' ? { dataDir: options.dataDir } : {}), migrationsApplied: applied },
      'results store open',
    );
    return db;
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
}

/** Readiness of the store, and closing it after everything else has stopped. */
@Injectable()
class StoreLifecycle implements OnApplicationShutdown {
  constructor(
    @Inject(SQL_CLIENT) private readonly db: SqlClient,
    @Inject(STORE_HEALTH) store: StoreHealth,
    @Inject(LOGGER) private readonly log: Logger,
    health: HealthRegistry,
  ) {
    health.addReadiness('results-store', async () => {
      try {
        await store.ping();
        return healthy;
      } catch (error) {
        return unhealthy(`store not answering: ${(error as Error).message}`);
      }
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.db.close();
    this.log.info('results store closed');
  }
}

/** The store's ports, each under its own injection token (results-store.port.ts). */
const PORTS: readonly [symbol, keyof ResultsStore][] = [
  [FINDINGS_WRITER, 'writer'],
  [FINDINGS_QUERIES, 'findings'],
  [FINDINGS_FEED, 'feed'],
  [STUDY_QUERIES, 'studies'],
  [FHIR_OUTBOX, 'outbox'],
  [FHIR_OUTBOX_CONTROL, 'outboxControl'],
  [FEEDBACK_STORE, 'feedback'],
  [REVIEW_QUERIES, 'review'],
  [STORE_HEALTH, 'health'],
];

@Global()
@Module({})
export class StoreModule {
  static forRoot(options: StoreOptions): DynamicModule {
    return {
      module: StoreModule,
      providers: [
        {
          provide: SQL_CLIENT,
          useFactory: (log: Logger) => openStore(options, log),
          inject: [LOGGER],
        },
        {
          provide: RESULTS_STORE,
          useFactory: (db: SqlClient) => sqlResultsStore(db),
          inject: [SQL_CLIENT],
        },
        ...PORTS.map(([token, port]) => ({ provide: token, useFactory: (store: ResultsStore) => store[port], inject: [RESULTS_STORE] })),
        StoreLifecycle,
      ],
      exports: PORTS.map(([token]) => token),
    };
  }
}
