import { ByteBudget } from './byte-budget';

const tick = () => new Promise((r) => setImmediate(r));

describe('ByteBudget', () => {
  it('admits what fits, queues the rest in order, and lets an oversize object in alone', async () => {
    const budget = new ByteBudget(100);
    const a = await budget.acquire(60);
    const order: string[] = [];
    const b = budget.acquire(50).then((r) => (order.push('b'), r));
    const c = budget.acquire(500).then((r) => (order.push('c'), r));
    await tick();
    expect(order).toEqual([]);
    expect(budget.inUse).toBe(60);
    a();
    const releaseB = await b;
    await tick();
    expect(order).toEqual(['b']);
    releaseB();
    releaseB();
    const releaseC = await c;
    expect(order).toEqual(['b', 'c']);
    expect(budget.inUse).toBe(100);
    releaseC();
    expect(budget.inUse).toBe(0);
  });
});
