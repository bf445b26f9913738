import { Inject, Injectable, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { createObjectStore, type ObjectStore } from '@thorax/object-store';
import { INGEST_CONFIG, type IngestConfig } from '../config';

/** Nest token of ingest's ObjectStore (OBJECT_STORE_URL). */
export const OBJECT_STORE = Symbol('thorax.ingest.object-store');

/** Closes the store's connections (S3 client sockets) when the service stops. */
@Injectable()
export class ObjectStoreLifecycle implements OnApplicationShutdown {
  constructor(@Inject(OBJECT_STORE) private readonly store: ObjectStore) {}

  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}

export const objectStoreProvider: Provider = {
  provide: OBJECT_STORE,
  useFactory: (config: IngestConfig) => createObjectStore(config),
  inject: [INGEST_CONFIG],
};
