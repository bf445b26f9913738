import { type DynamicModule, Global, Module } from '@nestjs/common';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { InstanceSubmitter } from './instance-submitter';
import { OBJECT_STORE, ObjectStoreLifecycle, objectStoreProvider } from './object-store.provider';

/**
 * The InstanceSubmitter every ingest edge hands instances to, and the object store behind the
 * claim-check. Global: edge modules (HTTP, gRPC, DICOMweb, DIMSE) inject InstanceSubmitter,
 * OBJECT_STORE and INGEST_CONFIG without importing it.
 */
@Global()
@Module({})
export class SubmitterModule {
  static forRoot(config: IngestConfig): DynamicModule {
    return {
      module: SubmitterModule,
      providers: [{ provide: INGEST_CONFIG, useValue: config }, objectStoreProvider, ObjectStoreLifecycle, InstanceSubmitter],
      exports: [INGEST_CONFIG, OBJECT_STORE, InstanceSubmitter],
    };
  }
}
