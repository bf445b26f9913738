import { ResultsApiError } from './api-error';
import { decodePageToken, decodeWatchCursor, encodePageToken, encodeWatchCursor } from './cursor';

describe('page tokens', () => {
  it('round-trip any sequence, including beyond 2^53', () => {
    for (const seq of [1n, 42n, 9_007_199_254_740_993n, 9_223_372_036_854_775_807n]) {
      const token = encodePageToken(seq);
      expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(token).not.toContain(seq.toString());
      expect(decodePageToken(token)).toBe(seq);
    }
  });

  it('reject tokens this service did not issue', () => {
    for (const bad of ['12', 'not a token', Buffer.from('p2:5').toString('base64url'), Buffer.from('p1:-5').toString('base64url'), 'x'.repeat(100)]) {
      expect(() => decodePageToken(bad)).toThrow(ResultsApiError);
      try {
        decodePageToken(bad);
      } catch (error) {
        expect((error as ResultsApiError).code).toBe('INVALID_ARGUMENT');
      }
    }
  });
});

describe('watch cursors', () => {
  it('are the decimal sequence; empty means from now', () => {
    expect(encodeWatchCursor(17n)).toBe('17');
    expect(decodeWatchCursor('17')).toBe(17n);
    expect(decodeWatchCursor('0')).toBe(0n);
    expect(decodeWatchCursor('')).toBeNull();
    expect(() => decodeWatchCursor('-1')).toThrow(ResultsApiError);
    expect(() => decodeWatchCursor('abc')).toThrow(ResultsApiError);
  });
});
