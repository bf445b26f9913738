// Back-to-back Kafka transactions of one librdkafka transactional producer
// (@confluentinc/kafka-javascript, KAFKA_CLIENT=librdkafka), the way an exactly-once stage runs
// them when records keep arriving: each transaction sends one record, adds an input offset with
// the consumer's group metadata (sendOffsets, KIP-447) and commits, and the next one starts at
// once. While the broker still writes the previous transaction's markers it answers
// CONCURRENT_TRANSACTIONS; librdkafka retries AddPartitionsToTxn after 20 ms but AddOffsetsToTxn,
// TxnOffsetCommit and EndTxn after `retry.backoff.ms` (100 ms by default, doubling per retry).
// Prints p50/p90/p99/max of the time per transaction for each `retry.backoff.ms`, rounds
// alternating (docs/inference.md "Kafka client").
//
//   KAFKA_BROKERS=127.0.0.1:9092 node libs/kafka/bench/transaction-retry-rdkafka.cjs
//   BENCH_BACKOFFS=100,20 (retry.backoff.ms values)  BENCH_TRANSACTIONS=60  BENCH_ROUNDS=3
//   KAFKA_LIBRDKAFKA_DIR: where scripts/rdkafka.sh built the package (default .cache/confluent-kafka)
'use strict';
const path = require('node:path');

const dir = process.env.KAFKA_LIBRDKAFKA_DIR || path.join(__dirname, '..', '..', '..', '.cache', 'confluent-kafka');
const { Kafka, logLevel } = require(path.join(dir, 'node_modules', '@confluentinc/kafka-javascript')).KafkaJS;

const brokers = (process.env.KAFKA_BROKERS || '127.0.0.1:9092').split(',');
const backoffs = (process.env.BENCH_BACKOFFS || '100,20').split(',').map(Number);
const transactions = Number(process.env.BENCH_TRANSACTIONS || 60);
const rounds = Number(process.env.BENCH_ROUNDS || 3);
const run = `bench-txn-rdkafka-${Date.now().toString(36)}`;
const value = Buffer.alloc(65_536, 7);

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function round(backoff, index) {
  const kafka = new Kafka({ kafkaJS: { brokers, clientId: run, logLevel: logLevel.NOTHING } });
  const producer = kafka.producer({
    'transactional.id': `${run}-${backoff}-${index}`,
    'enable.idempotence': true,
    acks: -1,
    'linger.ms': 2,
    'retry.backoff.ms': backoff,
  });
  const consumer = kafka.consumer({ 'group.id': `${run}-${index}`, 'enable.auto.commit': false });
  await Promise.all([producer.connect(), consumer.connect()]);
  const times = [];
  try {
    for (let i = 0; i < transactions; i += 1) {
      const start = performance.now();
      const txn = await producer.transaction();
      await txn.send({ topic: `${run}.out`, messages: [{ key: String(i), value }] });
      await txn.sendOffsets({
        consumer,
        topics: [{ topic: `${run}.in`, partitions: [{ partition: 0, offset: String(i + 1) }] }],
      });
      await txn.commit();
      times.push(performance.now() - start);
    }
  } finally {
    await Promise.all([producer.disconnect(), consumer.disconnect()]);
  }
  return times;
}

async function main() {
  const admin = new Kafka({ kafkaJS: { brokers, clientId: run, logLevel: logLevel.NOTHING } }).admin();
  await admin.connect();
  await admin.createTopics({
    topics: [
      { topic: `${run}.out`, numPartitions: 1 },
      { topic: `${run}.in`, numPartitions: 1 },
    ],
  });
  const byBackoff = new Map(backoffs.map((b) => [b, []]));
  try {
    for (let r = 0; r < rounds; r += 1) {
      for (const backoff of r % 2 === 0 ? backoffs : [...backoffs].reverse())
        byBackoff.get(backoff).push(...(await round(backoff, r)));
    }
  } finally {
    await admin.deleteTopics({ topics: [`${run}.out`, `${run}.in`] }).catch(() => undefined);
    await admin.disconnect();
  }
  for (const [backoff, times] of byBackoff) {
    const sorted = [...times].sort((a, b) => a - b);
    const slow = sorted.filter((t) => t >= backoff).length;
    console.log(
      `retry.backoff.ms ${backoff}: ${sorted.length} transactions, p50 ${quantile(sorted, 0.5).toFixed(1)} ms, ` +
        `p90 ${quantile(sorted, 0.9).toFixed(1)} ms, p99 ${quantile(sorted, 0.99).toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms, ` +
        `${slow} at or above the backoff`,
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
