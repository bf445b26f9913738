import { type DynamicModule, Module } from '@nestjs/common';
import { kafkaClientOptions } from '@thorax/config';
import { KafkaModule } from '@thorax/kafka';
import { createObjectStore } from '@thorax/object-store';
import { type Logger, ObservabilityModule } from '@thorax/observability';
import { PREPROCESS_CONFIG, type PreprocessConfig } from './config';
import { ImagesConsumer } from './images/images.consumer';
import { PREPROCESS_OBJECT_STORE, PreprocessService } from './images/preprocess.service';
import { SERVICE_VERSION } from './version';

@Module({})
export class AppModule {
  static forRoot(config: PreprocessConfig, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ObservabilityModule.forRoot({ service: 'preprocess', version: SERVICE_VERSION, logLevel: config.LOG_LEVEL, logger }),
        KafkaModule.forRoot(kafkaClientOptions(config, 'thorax-preprocess')),
      ],
      providers: [
        { provide: PREPROCESS_CONFIG, useValue: config },
        { provide: PREPROCESS_OBJECT_STORE, useFactory: () => createObjectStore(config) },
        PreprocessService,
        ImagesConsumer,
      ],
    };
  }
}
