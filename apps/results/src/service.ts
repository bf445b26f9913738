import type { ServiceDefinition } from '@thorax/observability';
import { AppModule } from './app.module';
import { resultsConfigSchema } from './config';
import { SERVICE_VERSION } from './version';

/** The results service as a deployable: `main.ts` launches it alone, the co-located deployment beside others. */
export const resultsService: ServiceDefinition<typeof resultsConfigSchema> = {
  service: 'results',
  version: SERVICE_VERSION,
  schema: resultsConfigSchema,
  module: (config, logger, tls) => AppModule.forRoot(config, logger, tls),
};
