import type { FindingsFeed, StoredFindings } from '../store/results-store.port';

export interface FollowOptions {
  signal: AbortSignal;
  /** Also re-query this often, ms: results stored by other processes on a shared server. */
  pollMs: number;
  /** Rows per catch-up query. */
  batchSize?: number;
}

/**
 * Delivers every result stored after `after`, oldest first, then each new one as it is stored,
 * until the signal aborts. Transport-neutral (gRPC WatchFindings today, SSE or FHIR
 * subscriptions later). The store is the source of truth: an in-process notification or a poll
 * tick only wakes a catch-up query from the last delivered seq, so nothing is skipped or
 * delivered twice by the stream, and a slow `deliver` (backpressure) holds the query back.
 * Resolves when aborted; rejects if the store or `deliver` fails.
 */
export async function followFindings(
  feed: FindingsFeed,
  after: bigint,
  deliver: (record: StoredFindings) => Promise<void> | void,
  options: FollowOptions,
): Promise<void> {
  const { signal, pollMs } = options;
  const batchSize = options.batchSize ?? 256;
  let cursor = after;
  let dirty = true;
  let wake: (() => void) | null = null;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  // Subscribe before the first catch-up so a row stored in between is not missed.
  const unsubscribe = feed.onStored(poke);
  const timer = setInterval(poke, pollMs);
  timer.unref();
  signal.addEventListener('abort', poke);
  try {
    while (!signal.aborted) {
      if (!dirty) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
        continue;
      }
      dirty = false;
      for (;;) {
        const rows = await feed.after(cursor, batchSize);
        for (const row of rows) {
          if (signal.aborted) return;
          await deliver(row);
          cursor = row.seq;
        }
        if (rows.length < batchSize) break;
      }
    }
  } finally {
    unsubscribe();
    clearInterval(timer);
    signal.removeEventListener('abort', poke);
  }
}
