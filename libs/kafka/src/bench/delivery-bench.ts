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
 * Each client of the port (KAFKA_CLIENT: kafkajs, librdkafka) runs both modes in the same round,
 * so the clients compare side by side too: records per second and the process's CPU time per
 * record (user + system, librdkafka's threads included).
 *
 *   npm run build && KAFKA_BROKERS=127.0.0.1:9092 node dist/libs/kafka/src/bench/delivery-bench.js
 *
 * Environment: KAFKA_BROKERS (required), DELIVERY_BENCH_RECORDS (default 20000; BENCH_QUICK=1:
 * 5000), DELIVERY_BENCH_BYTES (value size, default 2048: a findings event), DELIVERY_BENCH_ROUNDS
 * (default 3; quick: 1), DELIVERY_BENCH_CLIENTS (default `kafkajs,librdkafka`; librdkafka is left
 * out, with a line saying so, when scripts/rdkafka.sh has not built it). The last line is JSON:
 * {records, bytes, exactly_once_per_s, at_least_once_per_s, ratio} of the first client, and
 * `clients` with every client's rates, CPU per record and ratio.
 */
import { KAFKA_CLIENTS, type KafkaClientKind } from '@thorax/config';
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { clientCases } from '../client-matrix';
import { createClient } from '../client-port';
import { KafkaPublisher } from '../kafka-publisher';
import { RecordConsumer } from '../record-consumer';

const env = process.env;
const QUICK = env['BENCH_QUICK'] === '1';
const RECORDS = Number(env['DELIVERY_BENCH_RECORDS'] ?? (QUICK ? 5000 : 20000));
const BYTES = Number(env['DELIVERY_BENCH_BYTES'] ?? 2048);
const ROUNDS = Number(env['DELIVERY_BENCH_ROUNDS'] ?? (QUICK ? 1 : 3));
const PARTITIONS = 6;
const brokers = (env['KAFKA_BROKERS'] ?? '').split(',').filter(Boolean);
if (brokers.length === 0) throw new Error('KAFKA_BROKERS is required');
const WANTED = (env['DELIVERY_BENCH_CLIENTS'] ?? KAFKA_CLIENTS.join(',')).split(',').map((c) => c.trim()).filter(Boolean);
for (const name of WANTED) {
  if (!(KAFKA_CLIENTS as readonly string[]).includes(name)) throw new Error(`DELIVERY_BENCH_CLIENTS: unknown client ${name} (${KAFKA_CLIENTS.join(', ')})`);
}
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

type Mode = 'exactly-once' | 'at-least-once';
interface Rate {
  perSecond: number;
  /** Process CPU (user + system) per record, ms. */
  cpuMs: number;
}

/** Records per second through one stage in `mode`, from start until every input is committed. */
async function measure(kind: KafkaClientKind, mode: Mode, round: number): Promise<Rate> {
  const input = `${RUN}.${round}.${kind}.${mode}.in`;
  const output = `${RUN}.${round}.${kind}.${mode}.out`;
  await prepare(input, output);
  const client = createClient({ brokers, clientId: `thorax-delivery-bench-${kind}`, client: kind }, log);
  // As KafkaConnection builds it: idempotent; serial for kafkajs only.
  const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, retries: 10 });
  await producer.connect();
  const publisher = new KafkaPublisher(producer, { lingerMs: 2, maxBatchRecords: 500, serial: kind === 'kafkajs' });
  const group = `${input}-group`;
  const consumer = new RecordConsumer<Buffer>(
    client,
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
  const cpu0 = process.cpuUsage();
  await consumer.start();
  while ((await committed(group, input)) < RECORDS) await new Promise((r) => setTimeout(r, 100));
  const seconds = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await consumer.stop();
  await producer.disconnect();
  // The polls of `committed` (a kafkajs admin) are in the CPU figure for both clients alike.
  return { perSecond: RECORDS / seconds, cpuMs: (cpu.user + cpu.system) / 1000 / RECORDS };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function main(): Promise<void> {
  const clients: KafkaClientKind[] = [];
  for (const { kind, missing } of clientCases()) {
    if (!WANTED.includes(kind)) continue;
    if (missing) say(`${kind}: left out, ${missing}`);
    else clients.push(kind);
  }
  say(`delivery bench: ${RECORDS} records of ${BYTES} B, ${PARTITIONS} partitions, ${ROUNDS} rounds, clients ${clients.join(', ')}, brokers ${brokers.join(',')}`);
  const rates = new Map<string, Rate[]>();
  const key = (kind: KafkaClientKind, mode: Mode) => `${kind} ${mode}`;
  for (let round = 1; round <= ROUNDS; round += 1) {
    // Alternating order, so that a warming broker or a busy neighbour does not favour one mode
    // or one client.
    const modes: Mode[] = round % 2 ? ['at-least-once', 'exactly-once'] : ['exactly-once', 'at-least-once'];
    const kinds = round % 2 ? clients : [...clients].reverse();
    for (const kind of kinds) {
      for (const mode of modes) {
        const rate = await measure(kind, mode, round);
        rates.set(key(kind, mode), [...(rates.get(key(kind, mode)) ?? []), rate]);
        say(`round ${round} ${kind.padEnd(10)} ${mode.padEnd(13)} ${rate.perSecond.toFixed(0)} records/s, ${rate.cpuMs.toFixed(3)} ms CPU per record`);
      }
    }
  }
  const summary: Record<string, { exactly_once_per_s: number; at_least_once_per_s: number; ratio: number; exactly_once_cpu_ms: number; at_least_once_cpu_ms: number }> = {};
  for (const kind of clients) {
    const eosRates = rates.get(key(kind, 'exactly-once')) ?? [];
    const aloRates = rates.get(key(kind, 'at-least-once')) ?? [];
    const eos = median(eosRates.map((r) => r.perSecond));
    const alo = median(aloRates.map((r) => r.perSecond));
    // Each round's two runs are back to back: their ratio is less exposed to a busy machine than
    // the ratio of the medians.
    const ratios = eosRates.map((r, i) => r.perSecond / (aloRates[i]?.perSecond ?? r.perSecond));
    const ratio = median(ratios);
    const eosCpu = median(eosRates.map((r) => r.cpuMs));
    const aloCpu = median(aloRates.map((r) => r.cpuMs));
    say(
      `${kind} median: exactly-once ${eos.toFixed(0)} records/s (${eosCpu.toFixed(3)} ms CPU/record), at-least-once ${alo.toFixed(0)} records/s ` +
        `(${aloCpu.toFixed(3)} ms CPU/record); ratio per round ${ratios.map((r) => r.toFixed(2)).join(', ')}, median ${ratio.toFixed(2)}`,
    );
    summary[kind] = {
      exactly_once_per_s: Math.round(eos),
      at_least_once_per_s: Math.round(alo),
      ratio: Number(ratio.toFixed(3)),
      exactly_once_cpu_ms: Number(eosCpu.toFixed(4)),
      at_least_once_cpu_ms: Number(aloCpu.toFixed(4)),
    };
  }
  if (clients.length === 2) {
    const [a, b] = clients as [KafkaClientKind, KafkaClientKind];
    const of = (kind: KafkaClientKind, mode: Mode, what: 'perSecond' | 'cpuMs') => median((rates.get(key(kind, mode)) ?? []).map((r) => r[what]));
    for (const mode of ['exactly-once', 'at-least-once'] as Mode[]) {
      say(
        `${b} / ${a}, ${mode}: records/s ${(of(b, mode, 'perSecond') / of(a, mode, 'perSecond')).toFixed(2)}, ` +
          `CPU per record ${(of(b, mode, 'cpuMs') / of(a, mode, 'cpuMs')).toFixed(2)}`,
      );
    }
  }
  const first = summary[clients[0] ?? 'kafkajs'];
  say(
    JSON.stringify({
      records: RECORDS,
      bytes: BYTES,
      exactly_once_per_s: first?.exactly_once_per_s ?? 0,
      at_least_once_per_s: first?.at_least_once_per_s ?? 0,
      ratio: first?.ratio ?? 0,
      clients: summary,
    }),
  );
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
