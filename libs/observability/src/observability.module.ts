import { type DynamicModule, Global, type MiddlewareConsumer, Module, type NestModule, RequestMethod } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import type { TokenVerifier } from '@thorax/auth';
import { API_AUTH, ApiAuthGuard } from './api-auth';
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
  /**
   * API authentication: a verifier makes every route that is not @Public() require a bearer token
   * (see RequireScope); null or absent leaves the routes open. Given (either way), one start-up
   * line says which.
   */
  auth?: TokenVerifier | null;
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
    const auth = options.auth ?? null;
    if (options.auth !== undefined) logAuthMode(logger, auth);
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
        { provide: API_AUTH, useValue: auth },
        { provide: APP_GUARD, useClass: ApiAuthGuard },
      ],
      exports: [LOGGER, ThoraxMetrics, HealthRegistry, API_AUTH],
    };
  }

  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(HttpMetricsMiddleware).forRoutes({ path: '*', method: RequestMethod.ALL });
  }
}

function logAuthMode(logger: Logger, auth: TokenVerifier | null): void {
  if (auth === null) {
    logger.warn({ auth: 'off' }, 'API authentication is off: the HTTP and gRPC APIs are unauthenticated (set AUTH_JWKS_URL or AUTH_JWKS_FILE)');
    return;
  }
  const { keys, issuer, audience, readScope, adminScope } = auth.options;
  logger.info(
    { auth: 'bearer-jwt', jwks: keys.kind === 'remote' ? keys.url.href : 'file', issuer: issuer ?? null, audience: audience ?? null, readScope, adminScope },
    'API authentication on: bearer JWTs required',
  );
  if (keys.kind === 'remote' && keys.url.protocol === 'http:') {
    logger.warn({ jwks: keys.url.href }, 'AUTH_JWKS_URL is plain http: whoever can alter that traffic can mint accepted tokens; use https');
  }
}
