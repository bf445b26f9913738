import type { FindingsEvent } from '@thorax/contracts';
import type { FindingsWriter, StoreOutcome } from '../store/results-store.port';

/** Stores one event as a batch of one; its outcome. */
export async function storeOne(store: { writer: FindingsWriter }, event: FindingsEvent): Promise<StoreOutcome> {
  const [outcome] = await store.writer.store([event]);
  if (!outcome) throw new Error('the writer answered no outcome');
  return outcome;
}
