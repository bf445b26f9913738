import 'reflect-metadata';
import { loadConfig, loadServerTls } from '@thorax/config';
import { createLogger, startService } from '@thorax/observability';
import { AppModule } from './app.module';
import { resultsConfigSchema } from './config';
import { SERVICE_VERSION } from './version';

const config = loadConfig(resultsConfigSchema, process.env);
const tls = loadServerTls(config);
const logger = createLogger({ service: 'results', version: SERVICE_VERSION, level: config.LOG_LEVEL });
void startService(AppModule.forRoot(config, logger, tls), {
  logger,
  httpPort: config.HTTP_PORT,
  tls,
  shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS,
});
