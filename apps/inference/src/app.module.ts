import { type DynamicModule, Module } from '@nestjs/common';
import { kafkaClientOptions } from '@thorax/config';
import { KafkaModule } from '@thorax/kafka';
import { type Logger, ObservabilityModule } from '@thorax/observability';
import { INFERENCE_CONFIG, type InferenceConfig } from './config';
import { ModelService } from './model/model.service';
import { InferenceService } from './tensors/inference.service';
import { TensorsConsumer } from './tensors/tensors.consumer';
import { SERVICE_VERSION } from './version';

@Module({})
export class AppModule {
  static forRoot(config: InferenceConfig, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ObservabilityModule.forRoot({
          service: 'inference',
          version: SERVICE_VERSION,
          logLevel: config.LOG_LEVEL,
          logger,
        }),
        KafkaModule.forRoot(kafkaClientOptions(config, 'thorax-inference')),
      ],
      providers: [{ provide: INFERENCE_CONFIG, useValue: config }, ModelService, InferenceService, TensorsConsumer],
    };
  }
}
