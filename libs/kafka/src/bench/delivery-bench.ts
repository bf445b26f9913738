/**
 * The cost of exactly-once delivery, side by side in one run: one consume-process-produce stage
 * through the real consumer port (RecordConsumer, KafkaPublisher, as every Thorax stage uses
 * them), working off N pre-filled records and publishing one output for each, once with
 * KAFKA_DELIVERY=exactly-once (a transaction per fetch and partition, offsets in it) and once
 * with at-least-once (idempotent producer, offsets committed after the acknowledgement),
 * alternating for ROUNDS rounds on fresh topics. Only Kafka work is measured: the handler does
 * nothing but publish, so the ratio is the worst case a real stage (whose decode or inference
 * costs far more per record) can see.
 *
 *   npm run build && KAFKA_BROKERS=127.0.0.1:9092 node dist/libs/kafka/src/bench/delivery-bench.js
 *
 * Environment: KAFKA_BROKERS (required), DELIVERY_BENCH_RECORDS (default 20000; BENCH_QUICK=1:
 * 5000), DELIVERY_BENCH_BYTES (value size, default 2048: a findings event), DELIVERY_BENCH_ROUNDS
 * (default 3; quick: 1). The last line is JSON ({records, bytes, exactly_once_per_s,
 * at_least_once_per_s, ratio}).
 */
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import { KafkaPublisher } from '../kafka-publisher';
import { RecordConsumer } from '../record-consumer';
import { Kafka, logLevel, Partitioners } from 'kafkajs';

const env = process.env;
const QUICK = env['BENCH_QUICK'] === '1';
const RECORDS = Number(env['DELIVERY_BENCH_RECORDS'] ?? (QUICK ? 5000 : 20000));
const BYTES = Number(env['DELIVERY_BENCH_BYTES'] ?? 2048);
const ROUNDS = Number(env['DELIVERY_BENCH_ROUNDS'] ?? (QUICK ? 1 : 3));
const PARTITIONS = 6;
const brokers = (env['KAFKA_BROKERS'] ?? '').split(',').filter(Boolean);
if (brokers.length === 0) throw new Error('KAFKA_BROKERS is required');
const RUN = `dbench-${Date.now().toString(36)}`;
const kafka = new Kafka({ clientId: 'thorax-delivery-bench', brokers, logLevel: logLevel.NOTHING });
const log = createLogger({ service: 'delivery-bench', version: '0', level: 'warn' });

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function prepare(input: string, output: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    waitForLeaders: true,
    topics: [input, output, `${input}.dlq`, `${input}.findings`].map((topic) => ({ topic, numPartitions: PARTITIONS })),
  });
  await admin.disconnect();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const value = Buffer.alloc(BYTES, 7);
  for (let i = 0; i < RECORDS; i += 1000) {
    const messages = Array.from({ length: Math.min(1000, RECORDS - i) }, (_, k) => ({ key: `img-${i + k}`, value }));
    await producer.send({ topic: input, acks: -1, messages });
  }
  await producer.disconnect();
}

async function committed(group: string, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return (offsets?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  } finally {
    await admin.disconnect();
  }
}

/** Records per second through one stage in `mode`, from start until every input is committed. */
async function measure(mode: 'exactly-once' | 'at-least-once', round: number): Promise<number> {
  const input = `${RUN}.${round}.${mode}.in`;
  const output = `${RUN}.${round}.${mode}.out`;
  await prepare(input, output);
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  // As KafkaConnection builds it for an idempotent producer.
  const publisher = new KafkaPublisher(producer, { lingerMs: 2, maxBatchRecords: 500, serial: true });
  const group = `${input}-group`;
  const consumer = new RecordConsumer<Buffer>(
    kafka,
    {
      groupId: group,
      topic: input,
      stage: 'preprocess',
      findingsTopic: `${input}.findings`,
      decode: (value) => value,
      partitionsConsumedConcurrently: 3,
      maxInFlightPerPartition: 8,
      lagIntervalMs: 0,
    },
    {
      kind: 'single',
      handler: {
        handle: (delivery) => publisher.publish([{ topic: output, key: delivery.position.key ?? '', value: delivery.message, headers: delivery.forward }]),
      },
    },
    publisher,
    new ThoraxMetrics('bench'),
    new HealthRegistry(),
    log,
    mode,
  );
  const t0 = Date.now();
  await consumer.start();
  while ((await committed(group, input)) < RECORDS) await new Promise((r) => setTimeout(r, 100));
  const seconds = (Date.now() - t0) / 1000;
  await consumer.stop();
  await producer.disconnect();
  return RECORDS / seconds;
}

async function main(): Promise<void> {
  say(`delivery bench: ${RECORDS} records of ${BYTES} B, ${PARTITIONS} partitions, ${ROUNDS} rounds, brokers ${brokers.join(',')}`);
  const rates: Record<'exactly-once' | 'at-least-once', number[]> = { 'exactly-once': [], 'at-least-once': [] };
  for (let round = 1; round <= ROUNDS; round += 1) {
    // Alternating order, so that a warming broker or a busy neighbour does not favour one mode.
    const order: ('exactly-once' | 'at-least-once')[] = round % 2 ? ['at-least-once', 'exactly-once'] : ['exactly-once', 'at-least-once'];
    for (const mode of order) {
      const rate = await measure(mode, round);
      rates[mode].push(rate);
      say(`round ${round} ${mode.padEnd(13)} ${rate.toFixed(0)} records/s`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const eos = median(rates['exactly-once']);
  const alo = median(rates['at-least-once']);
  // Each round's two runs are back to back: their ratio is less exposed to a busy machine than
  // the ratio of the medians.
  const ratios = rates['exactly-once'].map((r, i) => r / (rates['at-least-once'][i] ?? r));
  const ratio = median(ratios);
  say(`median: exactly-once ${eos.toFixed(0)} records/s, at-least-once ${alo.toFixed(0)} records/s; ratio per round ${ratios.map((r) => r.toFixed(2)).join(', ')}, median ${ratio.toFixed(2)}`);
  say(JSON.stringify({ records: RECORDS, bytes: BYTES, exactly_once_per_s: Math.round(eos), at_least_once_per_s: Math.round(alo), ratio: Number(ratio.toFixed(3)) }));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
