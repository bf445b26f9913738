import type { ServiceDefinition } from '@thorax/observability';
import { AppModule } from './app.module';
import { preprocessConfigSchema } from './config';
import { SERVICE_VERSION } from './version';

/** The preprocess service as a deployable: `main.ts` launches it alone, the co-located deployment beside others. */
export const preprocessService: ServiceDefinition<typeof preprocessConfigSchema> = {
  service: 'preprocess',
  version: SERVICE_VERSION,
  schema: preprocessConfigSchema,
  module: (config, logger) => AppModule.forRoot(config, logger),
};
