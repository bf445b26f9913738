import { type DynamicModule, Global, Module } from '@nestjs/common';
import { HealthController } from './health.controller';
import { HealthRegistry } from './health';
import { createLogger, type Logger } from './logger';
import { ThoraxMetrics } from './metrics';

/** Injection token of the service's root pino logger. */
export const LOGGER = Symbol('thorax.logger');

export interface ObservabilityOptions {
  service: string;
  version: string;
  logLevel: string;
  /** Reuse a logger created before Nest booted (so boot logs share the stream). */
  logger?: Logger;
}

@Global()
@Module({})
export class ObservabilityModule {
  static forRoot(options: ObservabilityOptions): DynamicModule {
    const logger =
      options.logger ?? createLogger({ service: options.service, version: options.version, level: options.logLevel });
    return {
      module: ObservabilityModule,
      controllers: [HealthController],
      providers: [
        { provide: LOGGER, useValue: logger },
        { provide: ThoraxMetrics, useValue: new ThoraxMetrics(options.service) },
        { provide: HealthRegistry, useValue: new HealthRegistry() },
      ],
      exports: [LOGGER, ThoraxMetrics, HealthRegistry],
    };
  }
}
