import { Inject, Injectable, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { createObjectStore, type ObjectStore } from '@thorax/object-store';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';

/** Nest token of inference's ObjectStore (OBJECT_STORE_URL): where review images go. */
export const REVIEW_OBJECT_STORE = Symbol('thorax.inference.object-store');

/** Closes the store's connections (S3 client sockets) when the service stops. */
@Injectable()
export class ReviewObjectStoreLifecycle implements OnApplicationShutdown {
  constructor(@Inject(REVIEW_OBJECT_STORE) private readonly store: ObjectStore) {}

  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}

export const reviewObjectStoreProvider: Provider = {
  provide: REVIEW_OBJECT_STORE,
  useFactory: (config: InferenceConfig) => createObjectStore(config),
  inject: [INFERENCE_CONFIG],
};
