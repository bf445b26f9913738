import { type DynamicModule, Module } from '@nestjs/common';
import { kafkaClientOptions } from '@thorax/config';
import { KafkaModule } from '@thorax/kafka';
import { type Logger, ObservabilityModule } from '@thorax/observability';
import { INGEST_CONFIG, type IngestConfig } from './config';
import { SubmitterModule } from './edge/submitter.module';
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
        KafkaModule.forRoot(kafkaClientOptions(config, 'thorax-ingest')),
        SubmitterModule.forRoot(config),
      ],
      providers: [{ provide: INGEST_CONFIG, useValue: config }, StudyIntakeService, StudiesConsumer],
    };
  }
}
