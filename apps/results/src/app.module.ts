import { type DynamicModule, Module } from '@nestjs/common';
import { tokenVerifierFromConfig } from '@thorax/auth';
import { kafkaClientOptions, type ServerTls } from '@thorax/config';
import { KafkaModule } from '@thorax/kafka';
import { createObjectStore } from '@thorax/object-store';
import { LOGGER, type Logger, ObservabilityModule } from '@thorax/observability';
import { RESULTS_CONFIG, type ResultsConfig } from './config';
import { FEEDBACK_RELAY_OPTIONS, FeedbackRelay, type FeedbackRelayOptions } from './feedback/feedback-relay';
import { FEEDBACK_TOPIC_OPTIONS, type FeedbackTopicOptions, FeedbackTopicPublisher } from './feedback/feedback-topic.publisher';
import { FeedbackController } from './feedback/feedback.controller';
import { FeedbackService } from './feedback/feedback.service';
import { ClaimCheckRetention } from './findings/claim-check-retention';
import { FindingsConsumer } from './findings/findings.consumer';
import { FindingsController } from './findings/findings.controller';
import { FindingsReader, READER_OPTIONS, type ReaderOptions } from './findings/findings-reader.service';
import { FindingsRecorder } from './findings/findings-recorder.service';
import { ResultsGrpcController } from './grpc/results.grpc-controller';
import { GRPC_SERVER_OPTIONS, GrpcServer, type GrpcServerOptions } from './grpc/grpc-server';
import { FhirController } from './fhir/fhir.controller';
import { FHIR_OPTIONS, type FhirOptions, FhirService } from './fhir/fhir.service';
import { FHIR_TOPIC_OPTIONS, type FhirTopicOptions, FhirTopicPublisher } from './fhir/fhir-topic.publisher';
import { StudySettler } from './fhir/study-settler';
import { FHIR_TOPIC_WRITER, FhirOutboxRelay, fhirTopicWriter } from './fhir/fhir-outbox.relay';
import { OpenApiController } from './openapi/openapi.controller';
import { HeatmapRenderer } from './review/heatmap-renderer';
import { REVIEW_OBJECT_STORE, ReviewObjects } from './review/review-objects';
import { ReviewImagesController } from './review/review-images.controller';
import { ReviewPageController } from './review/review-page.controller';
import { ReviewController } from './review/review.controller';
import { REVIEW_OPTIONS, type ReviewOptions, ReviewService } from './review/review.service';
import { StoreModule } from './store/store.module';
import { StudiesController } from './studies/studies.controller';
import { StudiesReader } from './studies/studies-reader.service';
import { SERVICE_VERSION } from './version';

@Module({})
export class AppModule {
  /** `tls`: from loadServerTls, shared with the HTTP server; the JWK Set file, if any, is read here. */
  static forRoot(config: ResultsConfig, logger: Logger, tls: ServerTls | null = null): DynamicModule {
    const auth = tokenVerifierFromConfig(config);
    const grpc: GrpcServerOptions = { host: '0.0.0.0', port: config.GRPC_PORT, tls, auth };
    const reader: ReaderOptions = { watchPollMs: config.RESULTS_WATCH_POLL_MS };
    const fhir: FhirOptions = {
      baseUrl: config.RESULTS_FHIR_BASE_URL,
      accessionSystem: config.RESULTS_FHIR_ACCESSION_SYSTEM,
      patientIdSystem: config.RESULTS_FHIR_PATIENT_ID_SYSTEM,
    };
    const review: ReviewOptions = { showPatient: config.RESULTS_REVIEW_SHOW_PATIENT, worklistSize: config.RESULTS_REVIEW_WORKLIST_SIZE };
    return {
      module: AppModule,
      imports: [
        ObservabilityModule.forRoot({ service: 'results', version: SERVICE_VERSION, logLevel: config.LOG_LEVEL, logger, auth }),
        KafkaModule.forRoot(kafkaClientOptions(config, 'thorax-results')),
        StoreModule.forRoot({
          databaseUrl: config.DATABASE_URL,
          dataDir: config.RESULTS_DATA_DIR,
          poolSize: config.RESULTS_DB_POOL_SIZE,
        }),
      ],
      controllers: [
        // Routes under v1/findings/:id/… before FindingsController's v1/findings/:id.
        ReviewImagesController,
        FeedbackController,
        FindingsController,
        StudiesController,
        FhirController,
        OpenApiController,
        ReviewController,
        ReviewPageController,
      ],
      providers: [
        { provide: RESULTS_CONFIG, useValue: config },
        { provide: READER_OPTIONS, useValue: reader },
        { provide: GRPC_SERVER_OPTIONS, useValue: grpc },
        { provide: FHIR_OPTIONS, useValue: fhir },
        {
          provide: FHIR_TOPIC_OPTIONS,
          useValue: {
            topic: config.RESULTS_FHIR_TOPIC ?? null,
            settleMs: config.RESULTS_STUDY_SETTLE_MS,
            delivery: config.KAFKA_DELIVERY,
          } satisfies FhirTopicOptions,
        },
        FhirTopicPublisher,
        StudySettler,
        {
          provide: FHIR_TOPIC_WRITER,
          useFactory: (log: Logger) =>
            fhirTopicWriter(kafkaClientOptions(config, 'thorax-results'), { topic: config.RESULTS_FHIR_TOPIC ?? null, groupId: config.RESULTS_GROUP_ID }, log),
          inject: [LOGGER],
        },
        FhirOutboxRelay,
        { provide: REVIEW_OPTIONS, useValue: review },
        { provide: REVIEW_OBJECT_STORE, useFactory: () => createObjectStore(config) },
        { provide: FEEDBACK_TOPIC_OPTIONS, useValue: { topic: config.RESULTS_FEEDBACK_TOPIC } satisfies FeedbackTopicOptions },
        { provide: FEEDBACK_RELAY_OPTIONS, useValue: { intervalMs: config.RESULTS_FEEDBACK_RELAY_MS } satisfies FeedbackRelayOptions },
        ReviewObjects,
        HeatmapRenderer,
        ReviewService,
        FeedbackTopicPublisher,
        FeedbackService,
        FeedbackRelay,
        FindingsRecorder,
        ClaimCheckRetention,
        FindingsConsumer,
        FindingsReader,
        StudiesReader,
        FhirService,
        ResultsGrpcController,
        GrpcServer,
      ],
    };
  }
}
