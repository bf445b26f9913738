import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { loadConfig, loadServerTls, type ServerTls, type z } from '@thorax/config';
import { createLogger, type Logger, PinoNestLogger } from './logger';

/** How long a stop signal may take to drain before the process exits anyway (SHUTDOWN_TIMEOUT_MS). */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;

/**
 * Bounds the drain on SIGTERM/SIGINT. With the broker gone, kafkajs retries commits and leaves for
 * minutes; past the deadline the process exits (status 1) instead of outliving the orchestrator's
 * grace period. Nothing is lost: offsets not committed are redelivered to the group.
 */
export function armShutdownDeadline(logger: Logger, timeoutMs: number): void {
  const arm = (signal: NodeJS.Signals) => {
    const started = Date.now();
    setTimeout(() => {
      logger.error(
        { signal, drainMs: Date.now() - started, shutdownTimeoutMs: timeoutMs },
        'shutdown did not finish draining in time; exiting (records not committed are redelivered)',
      );
      logger.flush();
      process.exit(1);
    }, timeoutMs).unref();
  };
  process.once('SIGTERM', arm);
  process.once('SIGINT', arm);
}

/**
 * Boots a Nest app with the structured logger, SIGTERM/SIGINT draining (Nest shutdown hooks run
 * consumers' stop before producers disconnect) and the HTTP port, HTTPS when `tls` is given
 * (loadServerTls: TLS_CERT_FILE and TLS_KEY_FILE); logs and exits on failure.
 */
export async function startService(
  module: unknown,
  options: {
    logger: Logger;
    httpPort: number;
    host?: string;
    tls?: ServerTls | null;
    shutdownTimeoutMs?: number;
    /**
     * false: the caller owns SIGTERM/SIGINT and closes the app itself (several services in one
     * process must close in order; see `launch`). Default true.
     */
    signals?: boolean;
  },
): Promise<INestApplication> {
  const { logger } = options;
  const signals = options.signals ?? true;
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled promise rejection'));
  if (signals) armShutdownDeadline(logger, options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS);
  try {
    const tls = options.tls ?? null;
    const app = await NestFactory.create(module as never, {
      logger: new PinoNestLogger(logger),
      bodyParser: false,
      // Node's TLS defaults: TLS 1.2 and 1.3 only, its cipher list.
      ...(tls ? { httpsOptions: { cert: tls.cert, key: tls.key } } : {}),
    });
    // useProcessExit: exit through process.exit after the hooks ran, so pino flushes its last lines.
    if (signals) app.enableShutdownHooks(['SIGTERM', 'SIGINT'], { useProcessExit: true });
    await app.listen(options.httpPort, options.host ?? '0.0.0.0');
    logger.info(
      {
        httpPort: options.httpPort,
        scheme: tls ? 'https' : 'http',
        ...(tls ? { tlsSubject: tls.subject, tlsValidTo: tls.validTo } : {}),
      },
      'service started',
    );
    return app;
  } catch (error) {
    logger.fatal({ err: error }, 'service failed to start');
    process.exit(1);
  }
}

/** The settings every service's config has that `launch` needs. */
export interface LaunchConfig {
  LOG_LEVEL: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  HTTP_PORT: number;
  SHUTDOWN_TIMEOUT_MS: number;
  TLS_CERT_FILE?: string | undefined;
  TLS_KEY_FILE?: string | undefined;
}

/** A deployable service: its name, version, config schema and root module (apps/<name>/src/service.ts). */
export interface ServiceDefinition<S extends z.ZodType<LaunchConfig>> {
  service: string;
  version: string;
  schema: S;
  /** The root module; `tls` is the server certificate for servers of its own (gRPC). */
  module(config: z.infer<S>, logger: Logger, tls: ServerTls | null): unknown;
}

/**
 * Parses the service's config from `env` (a bad value stops the process naming the variable), builds
 * its logger and starts it (startService). `main.ts` of each app is `launch(definition, process.env)`;
 * the co-located deployment (docs/operations.md "Co-located stages") launches several in one process with
 * `signals: false` and closes them itself, first stage first.
 */
export function launch<S extends z.ZodType<LaunchConfig>>(
  definition: ServiceDefinition<S>,
  env: Record<string, string | undefined>,
  options: { signals?: boolean } = {},
): Promise<INestApplication> {
  const config = loadConfig(definition.schema, env) as LaunchConfig & z.infer<S>;
  // A service alone in its process names it (ps, top, /proc/<pid>/comm); co-located stages keep
  // their launcher's name.
  if (options.signals !== false) process.title = `thorax-${definition.service}`;
  const logger = createLogger({ service: definition.service, version: definition.version, level: config.LOG_LEVEL });
  const tls = loadServerTls(config);
  return startService(definition.module(config, logger, tls), {
    logger,
    httpPort: config.HTTP_PORT,
    tls,
    shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
    ...(options.signals === undefined ? {} : { signals: options.signals }),
  });
}
