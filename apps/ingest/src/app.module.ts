import { type DynamicModule, Module } from '@nestjs/common';
import { KafkaModule } from '@thorax/kafka';
import { type Logger, ObservabilityModule } from '@thorax/observability';
import { INGEST_CONFIG, type IngestConfig } from './config';
import { StudiesConsumer } from './studies/studies.consumer';
import { StudyIntakeService } from './studies/study-intake.service';
import { SERVICE_VERSION } from './version';

@Module({})
export class AppModule {
  static forRoot(config: IngestConfig, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ObservabilityModule.forRoot({ service: 'ingest', version: SERVICE_VERSION, logLevel: config.LOG_LEVEL, logger }),
        KafkaModule.forRoot({ brokers: config.KAFKA_BROKERS, clientId: config.KAFKA_CLIENT_ID ?? 'thorax-ingest' }),
      ],
      providers: [{ provide: INGEST_CONFIG, useValue: config }, StudyIntakeService, StudiesConsumer],
    };
  }
}
