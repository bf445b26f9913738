import { ThoraxError } from '@thorax/contracts';
import { classifyStoreError, storeFailureOf } from './store-errors';

const dbError = (code: string): Error => Object.assign(new Error(`db said ${code}`), { code });

describe('storeFailureOf', () => {
  it('tells rejected rows, an unavailable store and everything else apart', () => {
    expect(['22P05', '22007', '23514', '54000'].map((c) => storeFailureOf(dbError(c)))).toEqual(Array(4).fill('rejected'));
    expect(['08006', '40P01', '53300', '57P01'].map((c) => storeFailureOf(dbError(c)))).toEqual(Array(4).fill('unavailable'));
    expect(storeFailureOf(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe('unavailable');
    expect(storeFailureOf(dbError('42P01'))).toBe('unexpected');
    expect(storeFailureOf(new Error('timeout'))).toBe('unexpected');
    expect(storeFailureOf('not an error')).toBe('unexpected');
  });
});

describe('classifyStoreError', () => {
  it('dead-letters what the database can never accept', () => {
    for (const code of ['22P05', '22007', '23514', '54000']) {
      const error = classifyStoreError(dbError(code));
      expect(error.code).toBe('INVALID_MESSAGE');
      expect(error.transient).toBe(false);
    }
  });

  it('retries an unavailable store, and anything unexpected, then redelivers', () => {
    for (const error of [dbError('57P01'), dbError('08006'), Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), new Error('timeout')]) {
      const classified = classifyStoreError(error);
      expect(classified.code).toBe('INTERNAL_ERROR');
      expect(classified.transient).toBe(true);
      expect(classified.options.redeliver).toBe(true);
      expect(classified.options.stage).toBe('results');
    }
  });

  it('keeps an already classified error', () => {
    const error = new ThoraxError('INVALID_MESSAGE', 'x');
    expect(classifyStoreError(error)).toBe(error);
  });
});
