import type { ServiceDefinition } from '@thorax/observability';
import { AppModule } from './app.module';
import { ingestConfigSchema } from './config';
import { SERVICE_VERSION } from './version';

/** The ingest service as a deployable: `main.ts` launches it alone, the co-located deployment beside others. */
export const ingestService: ServiceDefinition<typeof ingestConfigSchema> = {
  service: 'ingest',
  version: SERVICE_VERSION,
  schema: ingestConfigSchema,
  module: (config, logger) => AppModule.forRoot(config, logger),
};
