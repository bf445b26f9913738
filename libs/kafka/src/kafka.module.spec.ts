import { connectBackoffMs } from './kafka.module';

describe('connectBackoffMs', () => {
  it('doubles from 1 s to a 30 s cap', () => {
    const middle = () => 0.5;
    expect([0, 1, 2, 3, 4, 5, 6, 20].map((attempt) => connectBackoffMs(attempt, middle))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000,
    ]);
  });

  it('spreads retries by ±20 % so replicas do not reconnect in step', () => {
    expect(connectBackoffMs(0, () => 0)).toBe(800);
    expect(connectBackoffMs(0, () => 0.999999)).toBe(1200);
    expect(connectBackoffMs(9, () => 0.999999)).toBe(36000);
  });
});
