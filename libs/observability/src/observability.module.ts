import { type DynamicModule, Global, type MiddlewareConsumer, Module, type NestModule, RequestMethod } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { HealthController } from './health.controller';
import { HealthRegistry } from './health';
import { HttpMetricsMiddleware } from './http-metrics.middleware';
import { createLogger, type Logger } from './logger';
import { ThoraxMetrics } from './metrics';
import { LOGGER } from './tokens';

export interface ObservabilityOptions {
  service: string;
  version: string;
  logLevel: string;
  /** Reuse a logger created before Nest booted (so boot logs share the stream). */
  logger?: Logger;
}

/**
 * The service's logger, metrics registry and health checks, plus `/healthz`, `/readyz` (through
 * @nestjs/terminus) and `/metrics`, and HTTP request metrics on every route.
 */
@Global()
@Module({})
export class ObservabilityModule implements NestModule {
  static forRoot(options: ObservabilityOptions): DynamicModule {
    const logger =
      options.logger ?? createLogger({ service: options.service, version: options.version, level: options.logLevel });
    const metrics = new ThoraxMetrics(options.service);
    const health = new HealthRegistry();
    metrics.bindHealth(health);
    metrics.buildInfo.set({ version: options.version }, 1);
    return {
      module: ObservabilityModule,
      // Terminus's own failure log is off: the controller logs readiness changes once each.
      imports: [TerminusModule.forRoot({ logger: false })],
      controllers: [HealthController],
      providers: [
        { provide: LOGGER, useValue: logger },
        { provide: ThoraxMetrics, useValue: metrics },
        { provide: HealthRegistry, useValue: health },
        HttpMetricsMiddleware,
      ],
      exports: [LOGGER, ThoraxMetrics, HealthRegistry],
    };
  }

  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(HttpMetricsMiddleware).forRoutes({ path: '*', method: RequestMethod.ALL });
  }
}
