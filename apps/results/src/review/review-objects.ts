import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { type ObjectStore, ObjectStoreError } from '@thorax/object-store';
import type { Readable } from 'node:stream';
import { ResultsApiError } from '../api/api-error';

/** The object store of review objects: wire images, activation maps, older heatmaps (OBJECT_STORE_URL). */
export const REVIEW_OBJECT_STORE = Symbol('thorax.results.review-object-store');

/** Review objects live under this key prefix (docs/object-store.md). */
export const REVIEW_PREFIX = 'review/';

/**
 * Reads review objects from the object store for the API. Only keys under `review/` of the
 * configured store are served: a findings event naming another object (a claim-checked input,
 * another bucket or file) gets NOT_FOUND, never its bytes.
 */
@Injectable()
export class ReviewObjects implements OnApplicationShutdown {
  constructor(@Inject(REVIEW_OBJECT_STORE) private readonly store: ObjectStore) {}

  /** The object's size; NOT_FOUND when it is missing or not a review object of this store. */
  async size(uri: string, what: string): Promise<number> {
    return this.guard(what, async () => {
      if (!this.store.keyOf(uri).startsWith(REVIEW_PREFIX)) throw new ObjectStoreError('INVALID_URI', 'not a review object');
      const stat = await this.store.stat(uri);
      if (!stat) throw new ObjectStoreError('NOT_FOUND', 'gone');
      return stat.size;
    });
  }

  /** The object's bytes, whole (call `size` first: it checks the key; for small objects only). */
  async read(uri: string, what: string): Promise<Buffer> {
    return this.guard(what, () => this.store.get(uri));
  }

  /** The object's bytes as a stream (call `size` first: it checks the key). */
  async open(uri: string, what: string): Promise<Readable> {
    return this.guard(what, () => this.store.open(uri));
  }

  private async guard<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof ObjectStoreError && error.kind !== 'UNAVAILABLE') {
        throw new ResultsApiError('NOT_FOUND', `the ${what} is not available`, { cause: error });
      }
      throw new ResultsApiError('UNAVAILABLE', 'the object store is not available', { cause: error });
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}
