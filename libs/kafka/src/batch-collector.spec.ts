import { createLogger } from '@thorax/observability';
import { type BatchHandler, type Delivery, ITEM_OK } from './consumer-port';
import { BatchCollector } from './record-consumer';

const log = createLogger({ service: 'test', version: '0', level: 'silent' });
const delivery = (n: number): Delivery<number> => ({
  message: n,
  forward: {},
  headers: {},
  position: { topic: 't', partition: n % 3, offset: String(n), key: `k${n}`, timestamp: 0 },
  log,
});

describe('BatchCollector', () => {
  it('gathers submissions into one call within the linger, and cuts at maxBatchRecords', async () => {
    const calls: number[][] = [];
    const handler: BatchHandler<number> = {
      handleBatch: async (ds) => {
        calls.push(ds.map((d) => d.message));
        return ds.map(() => ITEM_OK);
      },
    };
    const collector = new BatchCollector(handler, 4, 20);
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => collector.submit(delivery(n))));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(calls).toEqual([
      [1, 2, 3, 4],
      [5, 6],
    ]);
  });

  it('gives each delivery its own result, in order', async () => {
    const bad = new Error('row refused');
    const handler: BatchHandler<number> = {
      handleBatch: async (ds) => ds.map((d) => (d.message === 2 ? { ok: false, error: bad } : ITEM_OK)),
    };
    const collector = new BatchCollector(handler, 10, 1);
    const results = await Promise.all([1, 2, 3].map((n) => collector.submit(delivery(n))));
    expect(results).toEqual([ITEM_OK, { ok: false, error: bad }, ITEM_OK]);
  });

  it('fails every delivery of a call that throws or answers the wrong number of results', async () => {
    const down = new Error('store down');
    const throwing = new BatchCollector<number>({ handleBatch: async () => Promise.reject(down) }, 10, 1);
    const thrown = await Promise.all([1, 2].map((n) => throwing.submit(delivery(n))));
    expect(thrown).toEqual([
      { ok: false, error: down },
      { ok: false, error: down },
    ]);
    const short = new BatchCollector<number>({ handleBatch: async () => [ITEM_OK] }, 10, 1);
    const answered = await Promise.all([1, 2].map((n) => short.submit(delivery(n))));
    expect(answered.map((r) => r.ok)).toEqual([false, false]);
    expect(String((answered[0] as { error: unknown }).error)).toContain('1 results for 2 deliveries');
  });
});
