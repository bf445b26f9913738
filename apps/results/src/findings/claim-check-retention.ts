import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { HEADERS } from '@thorax/contracts';
import { createObjectStore, isClaimCheckUri, type ObjectStore } from '@thorax/object-store';
import { LOGGER, type Logger } from '@thorax/observability';
import { RESULTS_CONFIG, type ResultsConfig } from '../config';

/**
 * Retention of claim-checked inputs (docs/object-store.md): once the findings row of an image is
 * stored, the instance ingest left under `studies/` of the object store is no longer needed and is
 * deleted. The record says which object through the `thorax-claim-check` header, which only ingest
 * sets; anything not under `studies/` of this store is left alone. A failed delete is logged and
 * left to ingest's age-based sweep (OBJECT_STORE_RETENTION_HOURS).
 */
@Injectable()
export class ClaimCheckRetention implements OnApplicationShutdown {
  private readonly store: ObjectStore;

  constructor(
    @Inject(RESULTS_CONFIG) config: ResultsConfig,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.store = createObjectStore(config);
  }

  /** Deletes the claim-checked inputs of stored records (their headers); never throws. */
  async release(stored: readonly { headers: Record<string, string> }[]): Promise<number> {
    const uris = stored.map((s) => s.headers[HEADERS.claimCheck]).filter((uri): uri is string => uri !== undefined && isClaimCheckUri(uri, this.store));
    const outcomes = await Promise.allSettled(uris.map((uri) => this.store.delete(uri)));
    let deleted = 0;
    for (const outcome of outcomes) {
      if (outcome.status === 'fulfilled') deleted += 1;
      else this.log.warn({ err: outcome.reason }, 'claim-checked input not deleted; the age-based sweep will remove it');
    }
    return deleted;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}
