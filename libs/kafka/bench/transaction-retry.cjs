// Back-to-back Kafka transactions of one transactional producer, the way an exactly-once stage
// runs them when records keep arriving: each transaction sends one record, adds an input offset
// (sendOffsets) and commits, and the next one starts at once. While the broker still writes the
// previous transaction's markers it answers CONCURRENT_TRANSACTIONS, and the client waits its retry
// delay before trying again: kafkajs its `initialRetryTime`; librdkafka 20 ms for
// AddPartitionsToTxn but `retry.backoff.ms` (100 ms by default, doubling per retry) for
// AddOffsetsToTxn, TxnOffsetCommit and EndTxn. Prints p50/p90/p99/max of the time per transaction
// for each retry delay, rounds alternating (docs/inference.md "Where the CPU goes").
//
//   KAFKA_BROKERS=127.0.0.1:9092 node libs/kafka/bench/transaction-retry.cjs
//   BENCH_CLIENT=kafkajs (default) | librdkafka (@confluentinc/kafka-javascript, built by
//     scripts/rdkafka.sh into KAFKA_LIBRDKAFKA_DIR, default .cache/confluent-kafka)
//   BENCH_DELAYS (ms; kafkajs: initialRetryTime, default 300,20; librdkafka: retry.backoff.ms, default
//     100,20; `base/max` also sets librdkafka's retry.backoff.max.ms, e.g. 20,5/5)
//   BENCH_TRANSACTIONS=60  BENCH_ROUNDS=3
'use strict';
const path = require('node:path');

const client = process.env.BENCH_CLIENT || 'kafkajs';
if (client !== 'kafkajs' && client !== 'librdkafka')
  throw new Error(`BENCH_CLIENT must be kafkajs or librdkafka, not ${client}`);
const brokers = (process.env.KAFKA_BROKERS || '127.0.0.1:9092').split(',');
const delays = (process.env.BENCH_DELAYS || (client === 'kafkajs' ? '300,20' : '100,20')).split(',').map((d) => d.trim());
const base = (delay) => Number(delay.split('/')[0]);
const cap = (delay) => (delay.includes('/') ? Number(delay.split('/')[1]) : undefined);
const setting = client === 'kafkajs' ? 'initialRetryTime' : 'retry.backoff.ms';
const transactions = Number(process.env.BENCH_TRANSACTIONS || 60);
const rounds = Number(process.env.BENCH_ROUNDS || 3);
const run = `bench-txn-retry-${Date.now().toString(36)}`;
const value = Buffer.alloc(65_536, 7);

/** The transactional producer of one round, and what its sendOffsets takes besides the topics. */
function kafkajsRound(delay, index) {
  const { Kafka, logLevel } = require('kafkajs');
  const kafka = new Kafka({
    brokers,
    clientId: run,
    logLevel: logLevel.NOTHING,
    retry: { initialRetryTime: base(delay), retries: 10 },
  });
  const producer = kafka.producer({
    transactionalId: `${run}-${delay.replace('/', '-')}-${index}`,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  return { clients: [producer], producer, offsetsOf: { consumerGroupId: run } };
}

function librdkafkaRound(delay, index) {
  const kafka = new (librdkafka().Kafka)({
    kafkaJS: { brokers, clientId: run, logLevel: librdkafka().logLevel.NOTHING },
  });
  const producer = kafka.producer({
    'transactional.id': `${run}-${delay.replace('/', '-')}-${index}`,
    'enable.idempotence': true,
    acks: -1,
    'linger.ms': 2,
    'retry.backoff.ms': base(delay),
    ...(cap(delay) === undefined ? {} : { 'retry.backoff.max.ms': cap(delay) }),
  });
  // KIP-447: the offsets go with a group consumer's metadata.
  const consumer = kafka.consumer({ 'group.id': `${run}-${index}`, 'enable.auto.commit': false });
  return { clients: [producer, consumer], producer, offsetsOf: { consumer } };
}

function librdkafka() {
  const dir = process.env.KAFKA_LIBRDKAFKA_DIR || path.join(__dirname, '..', '..', '..', '.cache', 'confluent-kafka');
  return require(path.join(dir, 'node_modules', '@confluentinc/kafka-javascript')).KafkaJS;
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function round(delay, index) {
  const { clients, producer, offsetsOf } = (client === 'kafkajs' ? kafkajsRound : librdkafkaRound)(delay, index);
  await Promise.all(clients.map((c) => c.connect()));
  const times = [];
  try {
    for (let i = 0; i < transactions; i += 1) {
      const start = performance.now();
      const txn = await producer.transaction();
      await txn.send({ topic: `${run}.out`, messages: [{ key: String(i), value }] });
      await txn.sendOffsets({
        ...offsetsOf,
        topics: [{ topic: `${run}.in`, partitions: [{ partition: 0, offset: String(i + 1) }] }],
      });
      await txn.commit();
      times.push(performance.now() - start);
    }
  } finally {
    await Promise.all(clients.map((c) => c.disconnect()));
  }
  return times;
}

async function main() {
  const { Kafka, logLevel } = require('kafkajs');
  const admin = new Kafka({ brokers, clientId: run, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.createTopics({
    waitForLeaders: true,
    topics: [
      { topic: `${run}.out`, numPartitions: 1 },
      { topic: `${run}.in`, numPartitions: 1 },
    ],
  });
  const byDelay = new Map(delays.map((d) => [d, []]));
  try {
    for (let r = 0; r < rounds; r += 1) {
      for (const delay of r % 2 === 0 ? delays : [...delays].reverse())
        byDelay.get(delay).push(...(await round(delay, r)));
    }
  } finally {
    await admin.deleteTopics({ topics: [`${run}.out`, `${run}.in`] }).catch(() => undefined);
    await admin.disconnect();
  }
  for (const [delay, times] of byDelay) {
    const sorted = [...times].sort((a, b) => a - b);
    const slow = sorted.filter((t) => t >= base(delay)).length;
    console.log(
      `${client} ${setting} ${delay} ms: ${sorted.length} transactions, p50 ${quantile(sorted, 0.5).toFixed(1)} ms, ` +
        `p90 ${quantile(sorted, 0.9).toFixed(1)} ms, p99 ${quantile(sorted, 0.99).toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms, ` +
        `${slow} at or above the retry delay`,
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
