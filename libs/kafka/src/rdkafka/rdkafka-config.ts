import type { ConsumerSettings, ProducerSettings } from '../client-port';
import type { KafkaClientOptions } from '../kafka-client';

/** librdkafka properties (CONFIGURATION.md of librdkafka), as @confluentinc/kafka-javascript takes them. */
export type RdkafkaProperties = Record<string, string | number | boolean>;

const SASL_MECHANISMS = { plain: 'PLAIN', 'scram-sha-256': 'SCRAM-SHA-256', 'scram-sha-512': 'SCRAM-SHA-512' } as const;

/**
 * The connection properties every librdkafka client of a service shares: brokers, client id, TLS
 * (certificates always verified, host names checked) and SASL. PEM material is passed as strings
 * (`ssl.*.pem`), never written to disk. KAFKA_TLS_SERVERNAME has no librdkafka equivalent and is
 * refused by the configuration (libs/config kafkaEnvProblems).
 */
export function rdkafkaConnectionProperties(options: KafkaClientOptions): RdkafkaProperties {
  const props: RdkafkaProperties = {
    'bootstrap.servers': options.brokers.join(','),
    'client.id': options.clientId,
    'security.protocol': options.tls ? (options.sasl ? 'sasl_ssl' : 'ssl') : options.sasl ? 'sasl_plaintext' : 'plaintext',
    // kafkajs's defaults, so both clients give up on a dead connection alike.
    'socket.timeout.ms': 30_000,
    'socket.keepalive.enable': true,
    'reconnect.backoff.ms': 300,
    'reconnect.backoff.max.ms': 30_000,
  };
  if (options.tls) {
    props['enable.ssl.certificate.verification'] = true;
    props['ssl.endpoint.identification.algorithm'] = 'https';
    if (options.tls.ca) props['ssl.ca.pem'] = options.tls.ca.toString('utf8');
    if (options.tls.cert && options.tls.key) {
      props['ssl.certificate.pem'] = options.tls.cert.toString('utf8');
      props['ssl.key.pem'] = options.tls.key.toString('utf8');
    }
  }
  if (options.sasl) {
    props['sasl.mechanisms'] = SASL_MECHANISMS[options.sasl.mechanism];
    props['sasl.username'] = options.sasl.username;
    props['sasl.password'] = options.sasl.password;
  }
  return props;
}

/**
 * A producer's properties: acks from all in-sync replicas always; librdkafka's idempotence keeps
 * up to 5 requests in flight per broker with exact retries (it never reuses a sequence number),
 * so `maxInFlightRequests` of kafkajs's serial idempotent mode is not carried over. A transactional
 * producer is idempotent by definition.
 */
export function rdkafkaProducerProperties(settings: ProducerSettings): RdkafkaProperties {
  const idempotent = settings.idempotent || settings.transactional !== undefined;
  const props: RdkafkaProperties = {
    acks: -1,
    'enable.idempotence': idempotent,
    'max.in.flight.requests.per.connection': idempotent ? 5 : Math.max(1, settings.maxInFlightRequests),
    'allow.auto.create.topics': false,
    // Batching inside librdkafka: publish calls within 2 ms share a request (KafkaPublisher's linger).
    'linger.ms': 2,
    // Pixels do not compress: no codec (docs/inference.md).
    'compression.codec': 'none',
    'message.max.bytes': 64 * 1024 * 1024,
    // A send that cannot be delivered within this fails (kafkajs: 10 retries with backoff).
    'message.timeout.ms': 120_000,
    partitioner: 'murmur2_random',
  };
  if (!idempotent) props['retries'] = settings.retries;
  if (settings.transactional) {
    props['transactional.id'] = settings.transactional.id;
    props['transaction.timeout.ms'] = settings.transactional.timeoutMs;
    // Must not exceed the transaction timeout (librdkafka checks it).
    props['message.timeout.ms'] = Math.min(120_000, settings.transactional.timeoutMs);
    // A transaction that starts while the broker still writes the previous one's markers is
    // answered CONCURRENT_TRANSACTIONS; librdkafka retries AddPartitionsToTxn after 20 ms but
    // AddOffsetsToTxn, TxnOffsetCommit and EndTxn after retry.backoff.ms (100 ms by default,
    // doubling up to retry.backoff.max.ms, 1 s). From 20 ms, as the Java client and this repo's
    // kafkajs producers do: p99 of back-to-back transactions 382 → 119 ms
    // (BENCH_CLIENT=librdkafka libs/kafka/bench/transaction-retry.cjs, docs/inference.md).
    props['retry.backoff.ms'] = 20;
  }
  return props;
}

/**
 * A group consumer's properties: read_committed, manual commits or periodic commits of what the
 * application stored (never of what was merely fetched), no automatic topic creation, the
 * cooperative-sticky protocol off (eager rebalances, as kafkajs does, so every partition is
 * claimed again after a rebalance).
 */
export function rdkafkaConsumerProperties(settings: ConsumerSettings): RdkafkaProperties {
  const props: RdkafkaProperties = {
    'group.id': settings.groupId,
    'isolation.level': 'read_committed',
    'allow.auto.create.topics': false,
    'auto.offset.reset': settings.fromBeginning ? 'earliest' : 'latest',
    'session.timeout.ms': settings.sessionTimeoutMs,
    'heartbeat.interval.ms': settings.heartbeatIntervalMs,
    'enable.auto.commit': settings.autoCommit,
    'partition.assignment.strategy': 'range,roundrobin',
    'js.consumer.max.batch.size': settings.maxBatchRecords ?? 500,
  };
  if (settings.autoCommit && settings.autoCommitIntervalMs !== undefined) props['auto.commit.interval.ms'] = settings.autoCommitIntervalMs;
  if (settings.maxBytesPerPartition !== undefined) {
    props['max.partition.fetch.bytes'] = settings.maxBytesPerPartition;
    props['fetch.max.bytes'] = Math.max(52_428_800, settings.maxBytesPerPartition);
  }
  if (settings.maxWaitTimeMs !== undefined) props['fetch.wait.max.ms'] = settings.maxWaitTimeMs;
  return props;
}
