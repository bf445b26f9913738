import {
  KafkaJSConnectionError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSSASLAuthenticationError,
} from 'kafkajs';
import { classifyKafkaFailure, classifySocketError } from './connection-failure';

/** kafkajs's typings declare no constructor arguments for this error; its code takes a message. */
const SaslError = KafkaJSSASLAuthenticationError as unknown as new (message: string) => Error;

const scram = { tls: {}, sasl: { mechanism: 'scram-sha-512' as const, username: 'thorax', password: 'pw' } };

describe('classifyKafkaFailure', () => {
  it('names a SASL failure and the variables to check', () => {
    const failure = classifyKafkaFailure(
      new SaslError('SASL SCRAM SHA512 authentication failed: Invalid username or password'),
      scram,
    );
    expect(failure.kind).toBe('authentication');
    expect(failure.reason).toBe('kafka: authentication failed (SCRAM-SHA-512)');
    expect(failure.check).toEqual(['KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD_FILE (or KAFKA_SASL_PASSWORD)', 'KAFKA_SASL_MECHANISM']);
  });

  it('tells a mechanism the broker does not enable', () => {
    const failure = classifyKafkaFailure(
      new SaslError('SASL SCRAM-SHA-512 mechanism is not supported by the server'),
      scram,
    );
    expect(failure.reason).toBe('kafka: SASL mechanism SCRAM-SHA-512 not enabled on the broker');
    expect(failure.check).toEqual(['KAFKA_SASL_MECHANISM']);
  });

  it('finds a TLS failure inside the error kafkajs gives up with', () => {
    const tls = new KafkaJSConnectionError('Connection error: self-signed certificate in certificate chain', {
      broker: 'b:9093',
      code: 'SELF_SIGNED_CERT_IN_CHAIN',
    } as never);
    const failure = classifyKafkaFailure(new KafkaJSNumberOfRetriesExceeded(tls, { retryCount: 10, retryTime: 30000 } as never), scram);
    expect(failure.kind).toBe('tls');
    expect(failure.reason).toBe('kafka: TLS handshake failed (SELF_SIGNED_CERT_IN_CHAIN)');
    expect(failure.check).toEqual(['KAFKA_TLS_CA_FILE', 'KAFKA_TLS_SERVERNAME']);
  });

  it('points a name mismatch at the server name and a plaintext listener at KAFKA_TLS', () => {
    const altname = Object.assign(new Error("Hostname/IP does not match certificate's altnames"), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    expect(classifySocketError(altname, scram)?.check).toEqual(['KAFKA_TLS_SERVERNAME', 'KAFKA_BROKERS']);
    const wrongVersion = Object.assign(new Error('wrong version number'), { code: 'ERR_SSL_WRONG_VERSION_NUMBER' });
    expect(classifySocketError(wrongVersion, scram)?.check[0]).toMatch(/^KAFKA_TLS /);
    expect(classifySocketError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), scram)).toBeNull();
  });

  it('names missing ACLs as an authorization failure', () => {
    const denied = new KafkaJSProtocolError({ type: 'TOPIC_AUTHORIZATION_FAILED', message: 'Not authorized', retriable: false } as never);
    const failure = classifyKafkaFailure(denied, scram);
    expect(failure.kind).toBe('authorization');
    expect(failure.reason).toBe('kafka: not authorized (TOPIC_AUTHORIZATION_FAILED)');
  });

  it('treats anything else as brokers unreachable (transient)', () => {
    const failure = classifyKafkaFailure(
      new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092', { code: 'ECONNREFUSED' } as never),
      { tls: null, sasl: null },
    );
    expect(failure.kind).toBe('unreachable');
    expect(failure.reason).toBe('kafka: brokers unreachable (Connection error: connect ECONNREFUSED 127.0.0.1:9092)');
  });
});
