import { type DynamicModule, Module } from '@nestjs/common';
import { tokenVerifierFromConfig } from '@thorax/auth';
import { kafkaClientOptions, loadServerTls } from '@thorax/config';
import { KafkaModule } from '@thorax/kafka';
import { type Logger, ObservabilityModule } from '@thorax/observability';
import { INGEST_CONFIG, type IngestConfig } from './config';
import { DicomwebModule } from './dicomweb/dicomweb.module';
import { DimseModule } from './dimse/dimse.module';
import { EdgeModule } from './edge/edge.module';
import { SubmitterModule } from './edge/submitter.module';
import { StudiesConsumer } from './studies/studies.consumer';
import { StudyIntakeService } from './studies/study-intake.service';
import { SERVICE_VERSION } from './version';

@Module({})
export class AppModule {
  static forRoot(config: IngestConfig, logger: Logger): DynamicModule {
    // Bearer tokens on the HTTP and gRPC edges (AUTH_*); TLS on the gRPC port (TLS_*).
    const auth = tokenVerifierFromConfig(config);
    return {
      module: AppModule,
      imports: [
        ObservabilityModule.forRoot({ service: 'ingest', version: SERVICE_VERSION, logLevel: config.LOG_LEVEL, logger, auth }),
        KafkaModule.forRoot(kafkaClientOptions(config, 'thorax-ingest')),
        SubmitterModule.forRoot(config),
        EdgeModule.forRoot(config, { tls: loadServerTls(config), auth }),
        DimseModule,
        DicomwebModule,
      ],
      providers: [{ provide: INGEST_CONFIG, useValue: config }, StudyIntakeService, StudiesConsumer],
    };
  }
}
