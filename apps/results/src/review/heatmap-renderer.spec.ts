import { BufferLru, entityTag } from './heatmap-renderer';

const bytes = (n: number, fill = 1) => Buffer.alloc(n, fill);

describe('BufferLru', () => {
  it('keeps buffers up to its byte budget and evicts the least recently used first', () => {
    const lru = new BufferLru(1000);
    lru.set('a', bytes(100, 1));
    lru.set('b', bytes(100, 2));
    lru.set('c', bytes(100, 3));
    expect([lru.size, lru.bytes]).toEqual([3, 300]);
    // Reading a makes b the oldest.
    expect(lru.get('a')?.[0]).toBe(1);
    for (let i = 0; i < 7; i += 1) lru.set(`x${i}`, bytes(100));
    expect([lru.size, lru.bytes]).toEqual([10, 1000]);
    lru.set('x7', bytes(100));
    expect([lru.size, lru.bytes]).toEqual([10, 1000]);
    expect(lru.get('b')).toBeUndefined();
    // Now c, then a are the oldest; reading both leaves x0 to go next.
    expect(lru.get('c')?.[0]).toBe(3);
    expect(lru.get('a')?.[0]).toBe(1);
    lru.set('x8', bytes(100));
    expect(lru.get('x0')).toBeUndefined();
    expect(lru.get('a')?.[0]).toBe(1);
    expect(lru.get('c')?.[0]).toBe(3);
    expect([lru.size, lru.bytes]).toEqual([10, 1000]);
  });

  it('replaces an entry without counting it twice, and does not keep a buffer over an eighth of the budget', () => {
    const lru = new BufferLru(800);
    lru.set('a', bytes(100));
    lru.set('a', bytes(50));
    expect([lru.size, lru.bytes]).toEqual([1, 50]);
    lru.set('big', bytes(101));
    expect(lru.get('big')).toBeUndefined();
    expect(lru.bytes).toBe(50);
  });
});

describe('entityTag', () => {
  it('is a strong 32-character tag that changes with every part', () => {
    const tag = entityTag('file:///o/review/1/v/cam.bin', 3400, 'heatmap Mass', 'render 1');
    expect(tag).toMatch(/^"[A-Za-z0-9_-]{32}"$/);
    expect(entityTag('file:///o/review/1/v/cam.bin', 3400, 'heatmap Mass', 'render 1')).toBe(tag);
    for (const other of [
      entityTag('file:///o/review/2/v/cam.bin', 3400, 'heatmap Mass', 'render 1'),
      entityTag('file:///o/review/1/v/cam.bin', 3404, 'heatmap Mass', 'render 1'),
      entityTag('file:///o/review/1/v/cam.bin', 3400, 'heatmap Nodule', 'render 1'),
      entityTag('file:///o/review/1/v/cam.bin', 3400, 'heatmap Mass', 'render 2'),
    ])
      expect(other).not.toBe(tag);
  });
});
