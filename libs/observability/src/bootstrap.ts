import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { ServerTls } from '@thorax/config';
import { type Logger, PinoNestLogger } from './logger';

/**
 * Boots a Nest app with the structured logger, SIGTERM/SIGINT draining (Nest shutdown hooks run
 * consumers' stop before producers disconnect) and the HTTP port, HTTPS when `tls` is given
 * (loadServerTls: TLS_CERT_FILE and TLS_KEY_FILE); logs and exits on failure.
 */
export async function startService(
  module: unknown,
  options: { logger: Logger; httpPort: number; host?: string; tls?: ServerTls | null },
): Promise<INestApplication> {
  const { logger } = options;
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled promise rejection'));
  try {
    const tls = options.tls ?? null;
    const app = await NestFactory.create(module as never, {
      logger: new PinoNestLogger(logger),
      bodyParser: false,
      // Node's TLS defaults: TLS 1.2 and 1.3 only, its cipher list.
      ...(tls ? { httpsOptions: { cert: tls.cert, key: tls.key } } : {}),
    });
    // useProcessExit: exit through process.exit after the hooks ran, so pino flushes its last lines.
    app.enableShutdownHooks(['SIGTERM', 'SIGINT'], { useProcessExit: true });
    await app.listen(options.httpPort, options.host ?? '0.0.0.0');
    logger.info(
      { httpPort: options.httpPort, scheme: tls ? 'https' : 'http', ...(tls ? { tlsSubject: tls.subject, tlsValidTo: tls.validTo } : {}) },
      'service started',
    );
    return app;
  } catch (error) {
    logger.fatal({ err: error }, 'service failed to start');
    process.exit(1);
  }
}
