import { ThoraxError } from '@thorax/contracts';
import { decide, DEFAULT_RETRY_POLICY } from './failure-policy';

const notBroker = () => false;

describe('decide', () => {
  it('dead-letters permanent errors at once with their code', () => {
    const decision = decide(new ThoraxError('CORRUPT_IMAGE', 'bad png'), 1, DEFAULT_RETRY_POLICY, notBroker);
    expect(decision).toEqual({ kind: 'dead-letter', code: 'CORRUPT_IMAGE', message: 'bad png' });
  });

  it('retries transient and unexpected errors with growing backoff, then dead-letters', () => {
    const transient = new ThoraxError('INFERENCE_FAILED', 'busy', { transient: true });
    expect(decide(transient, 1, DEFAULT_RETRY_POLICY, notBroker)).toEqual({ kind: 'retry', delayMs: 200 });
    expect(decide(transient, 2, DEFAULT_RETRY_POLICY, notBroker)).toEqual({ kind: 'retry', delayMs: 400 });
    expect(decide(transient, 3, DEFAULT_RETRY_POLICY, notBroker)).toMatchObject({
      kind: 'dead-letter',
      code: 'INFERENCE_FAILED',
    });
    expect(decide(new TypeError('x is undefined'), 3, DEFAULT_RETRY_POLICY, notBroker)).toMatchObject({
      kind: 'dead-letter',
      code: 'INTERNAL_ERROR',
    });
  });

  it('retries an unavailable dependency in place, then hands the record back for redelivery', () => {
    const down = new ThoraxError('INTERNAL_ERROR', 'store unavailable', { redeliver: true });
    expect(decide(down, 1, DEFAULT_RETRY_POLICY, notBroker)).toEqual({ kind: 'retry', delayMs: 200 });
    expect(decide(down, 3, DEFAULT_RETRY_POLICY, notBroker)).toEqual({ kind: 'rethrow' });
  });

  it('rethrows broker failures so the record is redelivered, never dead-lettered', () => {
    expect(decide(new Error('leader not available'), 5, DEFAULT_RETRY_POLICY, () => true)).toEqual({ kind: 'rethrow' });
  });
});
