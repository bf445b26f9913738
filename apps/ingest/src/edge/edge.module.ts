import { type DynamicModule, Module } from '@nestjs/common';
import { kafkaClientOptions, type ServerTls } from '@thorax/config';
import type { TokenVerifier } from '@thorax/auth';
import { TopicFollower } from '@thorax/kafka';
import { LOGGER, type Logger } from '@thorax/observability';
import { AuditModule } from '../audit/audit.module';
import type { IngestConfig } from '../config';
import { FINDINGS_FOLLOWER, FindingsWaiter } from './findings-waiter';
import { INGEST_GRPC_OPTIONS, IngestGrpcServer, type IngestGrpcOptions } from './ingest.grpc-server';
import { ClaimCheckSweep } from './claim-check-sweep';
import { PredictService } from './predict.service';
import { StudiesController } from './studies.controller';

/**
 * The HTTP (`/v1/studies`, `/v1/predict`) and gRPC (thorax.v1.IngestService) edges of ingest, the
 * findings correlation behind predict, and the age-based sweep of claim-checked inputs. Needs
 * SubmitterModule (global) for InstanceSubmitter and the object store.
 */
@Module({})
export class EdgeModule {
  static forRoot(config: IngestConfig, options: { tls: ServerTls | null; auth: TokenVerifier | null }): DynamicModule {
    const grpc: IngestGrpcOptions = {
      host: '0.0.0.0',
      port: config.INGEST_GRPC_PORT ?? config.GRPC_PORT,
      tls: options.tls,
      auth: options.auth,
      // The image travels inside the message; a little more for the other fields.
      maxMessageBytes: Math.min(config.INGEST_OBJECT_MAX_BYTES + 64 * 1024, 2 ** 31 - 1),
    };
    return {
      module: EdgeModule,
      imports: [AuditModule],
      controllers: [StudiesController],
      providers: [
        { provide: INGEST_GRPC_OPTIONS, useValue: grpc },
        {
          provide: FINDINGS_FOLLOWER,
          useFactory: (log: Logger) => new TopicFollower(kafkaClientOptions(config, 'thorax-ingest-predict'), log),
          inject: [LOGGER],
        },
        FindingsWaiter,
        PredictService,
        IngestGrpcServer,
        ClaimCheckSweep,
      ],
    };
  }
}
