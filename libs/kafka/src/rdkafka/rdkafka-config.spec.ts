import { rdkafkaConnectionProperties, rdkafkaConsumerProperties, rdkafkaProducerProperties } from './rdkafka-config';

const PEM = (what: string) => Buffer.from(`-----BEGIN ${what}-----\nMIIB\n-----END ${what}-----\n`);

describe('librdkafka configuration', () => {
  it('maps brokers and client id, plaintext without TLS or SASL', () => {
    expect(rdkafkaConnectionProperties({ brokers: ['k1:9092', 'k2:9092'], clientId: 'thorax-ingest' })).toMatchObject({
      'bootstrap.servers': 'k1:9092,k2:9092',
      'client.id': 'thorax-ingest',
      'security.protocol': 'plaintext',
    });
  });

  it('verifies broker certificates and host names with TLS, passing PEM material as strings', () => {
    const props = rdkafkaConnectionProperties({
      brokers: ['k:9093'],
      clientId: 'c',
      tls: { ca: PEM('CERTIFICATE'), cert: PEM('CERTIFICATE'), key: PEM('PRIVATE KEY') },
      sasl: null,
    });
    expect(props).toMatchObject({
      'security.protocol': 'ssl',
      'enable.ssl.certificate.verification': true,
      'ssl.endpoint.identification.algorithm': 'https',
      'ssl.ca.pem': PEM('CERTIFICATE').toString(),
      'ssl.certificate.pem': PEM('CERTIFICATE').toString(),
      'ssl.key.pem': PEM('PRIVATE KEY').toString(),
    });
    // No client pair without both halves; no file locations ever.
    const caOnly = rdkafkaConnectionProperties({ brokers: ['k:9093'], clientId: 'c', tls: { ca: PEM('CERTIFICATE') } });
    expect(caOnly['ssl.certificate.pem']).toBeUndefined();
    expect(Object.keys(caOnly).filter((k) => k.endsWith('.location'))).toEqual([]);
  });

  it.each([
    ['plain', true, 'sasl_ssl', 'PLAIN'],
    ['scram-sha-256', false, 'sasl_plaintext', 'SCRAM-SHA-256'],
    ['scram-sha-512', true, 'sasl_ssl', 'SCRAM-SHA-512'],
  ] as const)('maps SASL %s (TLS %s) to %s with mechanism %s', (mechanism, tls, protocol, name) => {
    const props = rdkafkaConnectionProperties({
      brokers: ['k:9094'],
      clientId: 'c',
      tls: tls ? {} : null,
      sasl: { mechanism, username: 'thorax', password: 's3cret' },
    });
    expect(props).toMatchObject({ 'security.protocol': protocol, 'sasl.mechanisms': name, 'sasl.username': 'thorax', 'sasl.password': 's3cret' });
  });

  it('produces with acks=all; idempotent keeps 5 requests in flight, a transactional producer is idempotent', () => {
    const idempotent = rdkafkaProducerProperties({ idempotent: true, maxInFlightRequests: 1, retries: 10 });
    expect(idempotent).toMatchObject({ acks: -1, 'enable.idempotence': true, 'max.in.flight.requests.per.connection': 5, 'compression.codec': 'none' });
    expect(idempotent['transactional.id']).toBeUndefined();
    expect(idempotent['retries']).toBeUndefined(); // librdkafka's idempotence retries until message.timeout.ms

    const plain = rdkafkaProducerProperties({ idempotent: false, maxInFlightRequests: 5, retries: 10 });
    expect(plain).toMatchObject({ acks: -1, 'enable.idempotence': false, 'max.in.flight.requests.per.connection': 5, retries: 10 });

    const transactional = rdkafkaProducerProperties({
      idempotent: false,
      maxInFlightRequests: 1,
      retries: 10,
      transactional: { id: 'thorax-inference-thorax.tensors.v1-3', timeoutMs: 60_000 },
    });
    expect(transactional).toMatchObject({
      'enable.idempotence': true,
      'transactional.id': 'thorax-inference-thorax.tensors.v1-3',
      'transaction.timeout.ms': 60_000,
      'message.timeout.ms': 60_000,
      'retry.backoff.ms': 20, // CONCURRENT_TRANSACTIONS between back-to-back transactions
    });
    expect(idempotent['retry.backoff.ms']).toBeUndefined(); // librdkafka's 100 ms elsewhere
  });

  it('consumes read_committed, commits only resolved offsets, and sizes batches and fetches', () => {
    const eos = rdkafkaConsumerProperties({
      groupId: 'thorax-preprocess',
      sessionTimeoutMs: 30_000,
      heartbeatIntervalMs: 3_000,
      maxBytesPerPartition: 104_857_600,
      autoCommit: false,
      autoCommitIntervalMs: 1_000,
      fromBeginning: true,
      maxBatchRecords: 500,
    });
    expect(eos).toMatchObject({
      'group.id': 'thorax-preprocess',
      'isolation.level': 'read_committed',
      'enable.auto.commit': false,
      'auto.offset.reset': 'earliest',
      'allow.auto.create.topics': false,
      'max.partition.fetch.bytes': 104_857_600,
      'fetch.max.bytes': 104_857_600,
      'js.consumer.max.batch.size': 500,
    });
    expect(eos['auto.commit.interval.ms']).toBeUndefined();

    const follower = rdkafkaConsumerProperties({
      groupId: 'g',
      sessionTimeoutMs: 30_000,
      heartbeatIntervalMs: 3_000,
      maxWaitTimeMs: 100,
      autoCommit: true,
      autoCommitIntervalMs: 1_000,
      fromBeginning: false,
    });
    expect(follower).toMatchObject({ 'auto.offset.reset': 'latest', 'fetch.wait.max.ms': 100, 'enable.auto.commit': true, 'auto.commit.interval.ms': 1_000 });
  });
});
