import 'reflect-metadata';
import { loadConfig, loadServerTls } from '@thorax/config';
import { createLogger, startService } from '@thorax/observability';
import { AppModule } from './app.module';
import { preprocessConfigSchema } from './config';
import { SERVICE_VERSION } from './version';

const config = loadConfig(preprocessConfigSchema, process.env);
const logger = createLogger({ service: 'preprocess', version: SERVICE_VERSION, level: config.LOG_LEVEL });
void startService(AppModule.forRoot(config, logger), {
  logger,
  httpPort: config.HTTP_PORT,
  tls: loadServerTls(config),
  shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
});
