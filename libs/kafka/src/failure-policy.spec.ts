import { ThoraxError } from '@thorax/contracts';
import { KafkaJSNonRetriableError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } from 'kafkajs';
import { decide, DEFAULT_RETRY_POLICY, refusedRecordType } from './failure-policy';

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

  it('dead-letters a broker refusal of an output record as PUBLISH_REJECTED at once, not a redelivery forever', () => {
    // What a kafkajs producer throws for a record above the topic's max.message.bytes.
    const protocol = new KafkaJSProtocolError({ type: 'MESSAGE_TOO_LARGE', code: 10, retriable: false, message: 'too large' } as never);
    // kafkajs' retrier gives up at once on a non-retriable error and wraps it, naming it as the cause.
    const tooLarge = Object.assign(new KafkaJSNonRetriableError(protocol), { cause: protocol });
    const decision = decide(tooLarge, 1, DEFAULT_RETRY_POLICY, () => true);
    expect(decision).toMatchObject({ kind: 'dead-letter', code: 'PUBLISH_REJECTED' });
    expect((decision as { message: string }).message).toContain('MESSAGE_TOO_LARGE');
    // Wrapped again by a service (e.g. a ThoraxError asking for redelivery), still a refusal.
    const wrapped = new ThoraxError('INTERNAL_ERROR', 'publishing failed', { redeliver: true, cause: tooLarge });
    expect(decide(wrapped, 1, DEFAULT_RETRY_POLICY, () => false)).toMatchObject({ kind: 'dead-letter', code: 'PUBLISH_REJECTED' });
  });

  it('classifies only permanent refusals; leader changes and exhausted retries stay redeliveries', () => {
    const refusal = (type: string, retriable = false) =>
      new KafkaJSProtocolError({ type, code: 0, retriable, message: type } as never);
    for (const type of ['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE']) {
      const e = refusal(type);
      expect(refusedRecordType(Object.assign(new KafkaJSNonRetriableError(e), { cause: e }))).toBe(type);
    }
    // A missing ACL is the deployment's fault: redelivered until fixed, never dead-lettered.
    const denied = refusal('TOPIC_AUTHORIZATION_FAILED');
    const deniedSend = Object.assign(new KafkaJSNonRetriableError(denied), { cause: denied });
    expect(refusedRecordType(deniedSend)).toBeNull();
    expect(decide(deniedSend, 1, DEFAULT_RETRY_POLICY, () => true)).toEqual({ kind: 'rethrow' });
    const notLeader = refusal('NOT_LEADER_FOR_PARTITION', true);
    const outage = new KafkaJSNumberOfRetriesExceeded(notLeader, { retryCount: 5, retryTime: 100, cause: notLeader } as never);
    expect(refusedRecordType(outage)).toBeNull();
    expect(decide(outage, 9, DEFAULT_RETRY_POLICY, () => true)).toEqual({ kind: 'rethrow' });
    expect(refusedRecordType(new Error('MESSAGE_TOO_LARGE in a message is not a type'))).toBeNull();
  });
});
