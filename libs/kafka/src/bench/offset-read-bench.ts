/**
 * How long one read of a group's committed offsets takes while the group's partition is busy
 * with transactions, as a loaded exactly-once stage keeps it: stable reads (what claiming a
 * partition uses) against last-committed reads (`stable: false`, what the lag gauge uses),
 * alternated in one run on the port's admin (KAFKA_CLIENT, default librdkafka).
 *
 * On librdkafka each read is a blocking call on a libuv worker, the pool sharp decodes and
 * resizes on, so its duration is how long it keeps a worker from the image stages. A stable read
 * meets UNSTABLE_OFFSET_COMMIT whenever a transaction holds offsets for the partition, and
 * librdkafka retries it with backoff until it finds none, or until its timeout (10 s).
 *
 *   npm run build && KAFKA_BROKERS=127.0.0.1:9092 node dist/libs/kafka/src/bench/offset-read-bench.js
 *
 * Environment: KAFKA_BROKERS (required), KAFKA_CLIENT (default librdkafka),
 * OFFSET_READ_BENCH_READS (reads of each kind, default 100), OFFSET_READ_BENCH_GAP_MS (pause
 * between the load's transactions, default 0: back to back). The last line is JSON.
 */
import { KAFKA_CLIENTS, type KafkaClientKind } from '@thorax/config';
import { createLogger } from '@thorax/observability';
import { Kafka, logLevel } from 'kafkajs';
import { createClient } from '../client-port';

const env = process.env;
const brokers = (env['KAFKA_BROKERS'] ?? '').split(',').filter(Boolean);
if (brokers.length === 0) throw new Error('KAFKA_BROKERS is required');
const KIND = (env['KAFKA_CLIENT'] ?? 'librdkafka') as KafkaClientKind;
if (!KAFKA_CLIENTS.includes(KIND)) throw new Error(`KAFKA_CLIENT: unknown client ${KIND} (${KAFKA_CLIENTS.join(', ')})`);
const READS = Number(env['OFFSET_READ_BENCH_READS'] ?? 100);
const GAP_MS = Number(env['OFFSET_READ_BENCH_GAP_MS'] ?? 0);
const RUN = `obench-${Date.now().toString(36)}`;
const TOPIC = `${RUN}.in`;
const GROUP = `${RUN}-group`;
const log = createLogger({ service: 'offset-read-bench', version: '0', level: 'warn' });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

function summary(durations: number[], failures: number) {
  const sorted = [...durations].sort((a, b) => a - b);
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return {
    median_ms: round(quantile(sorted, 0.5)),
    p95_ms: round(quantile(sorted, 0.95)),
    max_ms: round(sorted.at(-1) ?? Number.NaN),
    over_100ms: sorted.filter((ms) => ms >= 100).length,
    total_ms: Math.round(sorted.reduce((sum, ms) => sum + ms, 0)),
    failed: failures,
  };
}

async function main(): Promise<void> {
  const kafka = new Kafka({ clientId: 'thorax-offset-read-bench', brokers, logLevel: logLevel.NOTHING });
  const setup = kafka.admin();
  await setup.connect();
  await setup.createTopics({ waitForLeaders: true, topics: [{ topic: TOPIC, numPartitions: 1 }, { topic: `${TOPIC}.out`, numPartitions: 1 }] });
  await setup.disconnect();

  const client = createClient({ brokers, clientId: 'thorax-offset-read-bench', client: KIND }, log);
  const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, retries: 10, transactional: { id: `${RUN}-tx`, timeoutMs: 60_000 } });
  // librdkafka's sendOffsets takes the group from a consumer of the same client (never subscribed).
  const member = client.consumer({ groupId: GROUP, sessionTimeoutMs: 10_000, heartbeatIntervalMs: 1_000, autoCommit: false, fromBeginning: true });
  const admin = client.admin();
  await Promise.all([producer.connect(), member.connect(), admin.connect()]);

  // The load: transactions of one output record and the input's next offset, as a stage commits them.
  let running = true;
  let transactions = 0;
  let openMs = 0;
  const load = (async () => {
    for (let offset = 1; running; offset += 1) {
      const began = performance.now();
      const transaction = await producer.transaction();
      await transaction.sendBatch({ topicMessages: [{ topic: `${TOPIC}.out`, messages: [{ key: String(offset), value: Buffer.alloc(2048), headers: {} }] }] });
      await transaction.sendOffsets({ consumerGroupId: GROUP, topics: [{ topic: TOPIC, partitions: [{ partition: 0, offset: String(offset) }] }] });
      await transaction.commit();
      openMs += performance.now() - began;
      transactions += 1;
      if (GAP_MS > 0) await sleep(GAP_MS);
    }
  })();

  // Each kind's reader connects on its first read: one untimed read of each first.
  await admin.fetchOffsets(GROUP, TOPIC, { stable: true }).catch(() => undefined);
  await admin.fetchOffsets(GROUP, TOPIC, { stable: false }).catch(() => undefined);
  await sleep(2_000);
  const loadStart = performance.now();
  const startTransactions = transactions;
  const startOpen = openMs;
  const durations = { stable: [] as number[], last: [] as number[] };
  const failures = { stable: 0, last: 0 };
  for (let i = 0; i < 2 * READS; i += 1) {
    const kind = i % 2 === 0 ? 'stable' : 'last';
    const began = performance.now();
    try {
      await admin.fetchOffsets(GROUP, TOPIC, { stable: kind === 'stable' });
    } catch {
      failures[kind] += 1;
    }
    durations[kind].push(performance.now() - began);
    await sleep(100);
  }
  const elapsed = performance.now() - loadStart;
  running = false;
  await load;
  const result = {
    client: KIND,
    reads: READS,
    gap_ms: GAP_MS,
    transactions_per_s: Math.round(((transactions - startTransactions) / elapsed) * 1000 * 10) / 10,
    transaction_open_share: Math.round(((openMs - startOpen) / elapsed) * 100) / 100,
    stable: summary(durations.stable, failures.stable),
    last_committed: summary(durations.last, failures.last),
  };
  process.stdout.write(
    `${KIND}: ${result.transactions_per_s} transactions/s, open ${Math.round(result.transaction_open_share * 100)} % of the time\n` +
      `  stable read:          median ${result.stable.median_ms} ms, p95 ${result.stable.p95_ms} ms, max ${result.stable.max_ms} ms, ≥ 100 ms ${result.stable.over_100ms}, total ${result.stable.total_ms} ms, failed ${result.stable.failed}/${READS}\n` +
      `  last-committed read:  median ${result.last_committed.median_ms} ms, p95 ${result.last_committed.p95_ms} ms, max ${result.last_committed.max_ms} ms, ≥ 100 ms ${result.last_committed.over_100ms}, total ${result.last_committed.total_ms} ms, failed ${result.last_committed.failed}/${READS}\n`,
  );
  process.stdout.write(`${JSON.stringify(result)}\n`);
  await Promise.all([producer.disconnect(), member.disconnect(), admin.disconnect()]);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
