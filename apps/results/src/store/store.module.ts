import {
  type DynamicModule,
  Global,
  Inject,
  Injectable,
  Module,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { HealthRegistry, healthy, LOGGER, type Logger, unhealthy } from '@thorax/observability';
import { FINDINGS_REPOSITORY, type FindingsRepository } from './findings.repository';
import { migrate } from './migrations';
import { PgSqlClient } from './pg-sql-client';
import { PgliteSqlClient } from './pglite-sql-client';
import type { SqlClient } from './sql-client';
import { SqlFindingsRepository } from './sql-findings.repository';

export interface StoreOptions {
  /** A PostgreSQL server; when absent, the embedded PGlite store in `dataDir`. */
  databaseUrl?: string | undefined;
  dataDir: string;
  poolSize: number;
}

const SQL_CLIENT = Symbol('thorax.results.sql-client');

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
    const backfilled = await new SqlFindingsRepository(db).backfillStudies();
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
    @Inject(FINDINGS_REPOSITORY) repository: FindingsRepository,
    @Inject(LOGGER) private readonly log: Logger,
    health: HealthRegistry,
  ) {
    health.addReadiness('results-store', async () => {
      try {
        await repository.ping();
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
          provide: FINDINGS_REPOSITORY,
          useFactory: (db: SqlClient) => new SqlFindingsRepository(db),
          inject: [SQL_CLIENT],
        },
        StoreLifecycle,
      ],
      exports: [FINDINGS_REPOSITORY],
    };
  }
}
