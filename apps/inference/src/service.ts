import type { ServiceDefinition } from '@thorax/observability';
import { AppModule } from './app.module';
import { inferenceConfigSchema } from './config';
import { SERVICE_VERSION } from './version';

/** The inference service as a deployable: `main.ts` launches it alone, the co-located deployment beside others. */
export const inferenceService: ServiceDefinition<typeof inferenceConfigSchema> = {
  service: 'inference',
  version: SERVICE_VERSION,
  schema: inferenceConfigSchema,
  module: (config, logger) => AppModule.forRoot(config, logger),
};
