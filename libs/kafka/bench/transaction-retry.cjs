// Back-to-back Kafka transactions of one kafkajs transactional producer, the way an exactly-once
// stage runs them when records keep arriving: each transaction sends one record, adds an input
// offset (sendOffsets) and commits, and the next one starts at once. While the broker still writes
// the previous transaction's markers it answers CONCURRENT_TRANSACTIONS, and kafkajs waits its
// retry delay (`initialRetryTime`) before trying again. Prints p50/p90/p99/max of the time per
// transaction for each retry delay, rounds alternating (docs/inference.md "Where the CPU goes").
//
//   KAFKA_BROKERS=127.0.0.1:9092 node libs/kafka/bench/transaction-retry.cjs
//   BENCH_DELAYS=300,20 (initialRetryTime values, ms)  BENCH_TRANSACTIONS=60  BENCH_ROUNDS=3
'use strict';
const { Kafka, logLevel } = require('kafkajs');

const brokers = (process.env.KAFKA_BROKERS || '127.0.0.1:9092').split(',');
const delays = (process.env.BENCH_DELAYS || '300,20').split(',').map(Number);
const transactions = Number(process.env.BENCH_TRANSACTIONS || 60);
const rounds = Number(process.env.BENCH_ROUNDS || 3);
const run = `bench-txn-retry-${Date.now().toString(36)}`;
const value = Buffer.alloc(65_536, 7);

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function round(delay, index) {
  const kafka = new Kafka({ brokers, clientId: run, logLevel: logLevel.NOTHING, retry: { initialRetryTime: delay, retries: 10 } });
  const producer = kafka.producer({ transactionalId: `${run}-${delay}-${index}`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const times = [];
  try {
    for (let i = 0; i < transactions; i += 1) {
      const start = performance.now();
      const txn = await producer.transaction();
      await txn.send({ topic: `${run}.out`, messages: [{ key: String(i), value }] });
      await txn.sendOffsets({ consumerGroupId: run, topics: [{ topic: `${run}.in`, partitions: [{ partition: 0, offset: String(i + 1) }] }] });
      await txn.commit();
      times.push(performance.now() - start);
    }
  } finally {
    await producer.disconnect();
  }
  return times;
}

async function main() {
  const admin = new Kafka({ brokers, clientId: run, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic: `${run}.out`, numPartitions: 1 }, { topic: `${run}.in`, numPartitions: 1 }] });
  const byDelay = new Map(delays.map((d) => [d, []]));
  try {
    for (let r = 0; r < rounds; r += 1) {
      for (const delay of r % 2 === 0 ? delays : [...delays].reverse()) byDelay.get(delay).push(...(await round(delay, r)));
    }
  } finally {
    await admin.deleteTopics({ topics: [`${run}.out`, `${run}.in`] }).catch(() => undefined);
    await admin.disconnect();
  }
  for (const [delay, times] of byDelay) {
    const sorted = [...times].sort((a, b) => a - b);
    const slow = sorted.filter((t) => t >= delay).length;
    console.log(
      `initialRetryTime ${delay} ms: ${sorted.length} transactions, p50 ${quantile(sorted, 0.5).toFixed(1)} ms, ` +
        `p90 ${quantile(sorted, 0.9).toFixed(1)} ms, p99 ${quantile(sorted, 0.99).toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(1)} ms, ` +
        `${slow} at or above the retry delay`,
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
