import { KafkaJSError, KafkaJSProtocolError } from 'kafkajs';
import { classifyKafkaFailure, classifySocketError, rdkafkaTlsCode } from './connection-failure';
import { refusedRecordType } from './failure-policy';
import { hasKafkaErrorType, isFatalProducerError, isKafkaClientError, kafkaErrorType } from './kafka-errors';
import { isFencedError } from './transactions';

/** An error as @confluentinc/kafka-javascript makes it from a librdkafka error. */
function rdkafkaError(type: string, code: number, message: string, flags: { fatal?: boolean; abortable?: boolean } = {}): Error {
  return Object.assign(new Error(message), { name: 'KafkaJSError', type, code, fatal: false, abortable: false, retriable: false, ...flags });
}

const sasl = { mechanism: 'scram-sha-512' as const, username: 'u', password: 'hunter2' };

describe('Kafka errors of both clients', () => {
  it('names librdkafka errors by their Kafka protocol names', () => {
    expect(kafkaErrorType(rdkafkaError('ERR_MSG_SIZE_TOO_LARGE', 10, 'Broker: Message size too large'))).toBe('MESSAGE_TOO_LARGE');
    expect(kafkaErrorType(rdkafkaError('ERR_INVALID_MSG', 2, 'Broker: Invalid message'))).toBe('CORRUPT_MESSAGE');
    expect(kafkaErrorType(rdkafkaError('ERR_TOPIC_EXCEPTION', 17, 'Broker: Invalid topic'))).toBe('INVALID_TOPIC_EXCEPTION');
    expect(kafkaErrorType(rdkafkaError('ERR_TOPIC_AUTHORIZATION_FAILED', 29, 'Broker: Topic authorization failed'))).toBe('TOPIC_AUTHORIZATION_FAILED');
    expect(kafkaErrorType(rdkafkaError('ERR__SSL', -181, 'ssl'))).toBe('_SSL');
    const kafkajs = new KafkaJSProtocolError('too large');
    Object.assign(kafkajs, { type: 'MESSAGE_TOO_LARGE' });
    expect(kafkaErrorType(kafkajs)).toBe('MESSAGE_TOO_LARGE');
    expect(kafkaErrorType(new Error('plain'))).toBeNull();
  });

  it('treats a record librdkafka says is too large as refused for good (dead letter), a timeout not', () => {
    expect(refusedRecordType(rdkafkaError('ERR_MSG_SIZE_TOO_LARGE', 10, 'Broker: Message size too large'))).toBe('MESSAGE_TOO_LARGE');
    expect(refusedRecordType(rdkafkaError('ERR_RECORD_LIST_TOO_LARGE', 18, 'Broker: Record list too large'))).toBe('RECORD_LIST_TOO_LARGE');
    expect(refusedRecordType(rdkafkaError('ERR__MSG_TIMED_OUT', -192, 'Local: Message timed out'))).toBeNull();
    expect(refusedRecordType(rdkafkaError('ERR_NOT_ENOUGH_REPLICAS', 19, 'Broker: Not enough in-sync replicas'))).toBeNull();
  });

  it('recognises a fenced transactional producer and librdkafka fatal errors', () => {
    expect(isFencedError(rdkafkaError('ERR__FENCED', -144, 'Local: This instance has been fenced by a newer instance', { fatal: true }))).toBe(true);
    expect(isFencedError(rdkafkaError('ERR_PRODUCER_FENCED', 90, 'Broker: Producer fenced'))).toBe(true);
    expect(isFencedError(rdkafkaError('ERR_INVALID_PRODUCER_EPOCH', 47, 'Broker: Producer attempted an operation with an old epoch'))).toBe(true);
    expect(isFencedError(rdkafkaError('ERR__TRANSPORT', -195, 'Local: Broker transport failure'))).toBe(false);
    expect(isFatalProducerError(rdkafkaError('ERR__FENCED', -144, 'fenced', { fatal: true }))).toBe(true);
    expect(isFatalProducerError(rdkafkaError('ERR_NOT_COORDINATOR', 16, 'abortable', { abortable: true }))).toBe(false);
    expect(hasKafkaErrorType(rdkafkaError('ERR_CONCURRENT_TRANSACTIONS', 51, 'busy'), 'CONCURRENT_TRANSACTIONS')).toBe(true);
  });

  it('counts kafkajs errors as client errors (redelivered, never dead-lettered), handler errors not', () => {
    expect(isKafkaClientError(new KafkaJSError('leader moved', { retriable: true }))).toBe(true);
    expect(isKafkaClientError(new Error('cannot decode'))).toBe(false);
  });

  it('classifies librdkafka connection failures: authentication, authorization, unreachable', () => {
    const auth = classifyKafkaFailure(
      rdkafkaError('ERR__AUTHENTICATION', -169, 'SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512'),
      { tls: null, sasl },
    );
    expect(auth).toMatchObject({ kind: 'authentication', reason: 'kafka: authentication failed (SCRAM-SHA-512)' });
    expect(JSON.stringify(auth)).not.toContain('hunter2');
    const mechanism = classifyKafkaFailure(
      rdkafkaError('ERR__AUTHENTICATION', -169, 'SASL handshake failed (start (-4)): SASL mechanism SCRAM-SHA-512 not supported by broker'),
      { tls: null, sasl },
    );
    expect(mechanism).toMatchObject({ kind: 'authentication', check: ['KAFKA_SASL_MECHANISM'] });
    // The package does not always keep the code of an authentication failure; its message says it.
    expect(classifyKafkaFailure(rdkafkaError('ERR_UNKNOWN', -1, 'authentication failure'), { tls: null, sasl })).toMatchObject({
      kind: 'authentication',
    });
    expect(classifySocketError(new Error('Local: Authentication failure'), { tls: null, sasl })?.kind).toBe('authentication');
    expect(classifySocketError(new Error('Connect to ipv4#127.0.0.1:9092 failed: Connection refused'), { tls: null, sasl })).toBeNull();
    expect(classifyKafkaFailure(rdkafkaError('ERR_TOPIC_AUTHORIZATION_FAILED', 29, 'Broker: Topic authorization failed'), { tls: null, sasl })).toMatchObject({
      kind: 'authorization',
      reason: 'kafka: not authorized (TOPIC_AUTHORIZATION_FAILED)',
    });
    expect(classifyKafkaFailure(rdkafkaError('ERR__TRANSPORT', -195, 'Local: Broker transport failure'), { tls: null, sasl: null })).toMatchObject({
      kind: 'unreachable',
      check: ['KAFKA_BROKERS'],
    });
  });

  it.each([
    ['SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'KAFKA_TLS_CA_FILE'],
    ['SSL handshake failed: error:0A00010B:SSL routines::wrong version number', 'ERR_SSL_WRONG_VERSION_NUMBER', 'KAFKA_TLS (the broker listener is not TLS)'],
    ['SSL handshake failed: error:0A00045C:SSL routines::tlsv13 alert certificate required', 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'KAFKA_TLS_CERT_FILE'],
    ['SSL handshake failed: Broker certificate hostname mismatch', 'ERR_TLS_CERT_ALTNAME_INVALID', 'KAFKA_BROKERS'],
  ])('classifies the librdkafka TLS failure "%s" as %s', (message, code, check) => {
    expect(rdkafkaTlsCode(message)).toBe(code);
    const failure = classifyKafkaFailure(rdkafkaError('ERR__SSL', -181, message), { tls: {}, sasl: null });
    expect(failure.kind).toBe('tls');
    expect(failure.reason).toBe(`kafka: TLS handshake failed (${code})`);
    expect(failure.check).toContain(check);
    // The same line seen by the client's log hook is reported at once.
    expect(classifySocketError(new Error(message), { tls: {} })?.kind).toBe('tls');
  });

  it('names KAFKA_TLS when a plaintext client meets a TLS listener', () => {
    const message = 'Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?) or broker version is < 0.10';
    expect(classifyKafkaFailure(rdkafkaError('ERR__TRANSPORT', -195, message), { tls: null, sasl: null })).toMatchObject({
      kind: 'tls',
      check: ['KAFKA_TLS (the broker listener may not be TLS, or it is and KAFKA_TLS is false)'],
    });
    expect(rdkafkaTlsCode('Connect to ipv4#127.0.0.1:9092 failed: Connection refused')).toBeNull();
  });
});
