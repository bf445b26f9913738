import { type DynamicModule, Module } from '@nestjs/common';
import { tokenVerifierFromConfig } from '@thorax/auth';
import { kafkaClientOptions } from '@thorax/config';
import { KafkaModule } from '@thorax/kafka';
import { type Logger, ObservabilityModule } from '@thorax/observability';
import { CONTROL_KAFKA_OPTIONS, ModelControlService } from './admin/model-control.service';
import { ModelsAdminController } from './admin/models.admin-controller';
import { INFERENCE_CONFIG, type InferenceConfig } from './config';
import { MODEL_SELECTION_SOURCE, ModelService } from './model/model.service';
import { ReviewObjectStoreLifecycle, reviewObjectStoreProvider } from './review/object-store.provider';
import { ReviewImagesService } from './review/review-images.service';
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
          // The model admin API (admin scope) when AUTH_JWKS_URL or AUTH_JWKS_FILE is set.
          auth: tokenVerifierFromConfig(config),
        }),
        KafkaModule.forRoot(kafkaClientOptions(config, 'thorax-inference')),
      ],
      controllers: [ModelsAdminController],
      providers: [
        { provide: INFERENCE_CONFIG, useValue: config },
        { provide: CONTROL_KAFKA_OPTIONS, useValue: kafkaClientOptions(config, 'thorax-inference-control') },
        ModelControlService,
        { provide: MODEL_SELECTION_SOURCE, useExisting: ModelControlService },
        reviewObjectStoreProvider,
        ReviewObjectStoreLifecycle,
        ReviewImagesService,
        ModelService,
        InferenceService,
        TensorsConsumer,
      ],
    };
  }
}
