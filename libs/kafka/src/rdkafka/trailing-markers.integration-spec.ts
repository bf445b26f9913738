/**
 * An exactly-once RecordConsumer's committed offsets reach the end of its input partitions once
 * idle, past the producing stage's trailing commit markers and an aborted transaction, on each
 * client of the port, and no record is passed over (KAFKA_BROKERS).
 */
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import { testBrokers } from '@thorax/testing';
import type { KafkaClientKind } from '@thorax/config';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { createClient, type KafkaClient } from '../client-port';
import { describeEachClient } from '../client-matrix';
import type { Delivery } from '../consumer-port';
import { KafkaPublisher } from '../kafka-publisher';
import { RecordConsumer } from '../record-consumer';
import { hasPartitionEndProbes } from './partition-end-probe';

jest.setTimeout(120_000);

const kafka = new Kafka({ clientId: 'thorax-markers-itest', brokers: testBrokers(), logLevel: logLevel.NOTHING });
const log = createLogger({ service: 'itest', version: '0', level: process.env['THORAX_EOS_TEST_LOG'] === '1' ? 'debug' : 'silent' });
const base = `markers-${Date.now().toString(36)}`;
const PARTITIONS = 3;

/** Writes `records` in transactions of `perTransaction` (the last one aborted when asked). */
async function produceTransactions(
  topic: string,
  records: { key: string; partition: number }[],
  perTransaction: number,
  abortLast = false,
): Promise<void> {
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionalId: `${topic}-upstream`,
  });
  await producer.connect();
  for (let i = 0; i < records.length; i += perTransaction) {
    const transaction = await producer.transaction();
    const chunk = records.slice(i, i + perTransaction);
    await transaction.send({ topic, messages: chunk.map(({ key, partition }) => ({ key, value: Buffer.from(key), partition })) });
    if (abortLast && i + perTransaction >= records.length) await transaction.abort();
    else await transaction.commit();
  }
  await producer.disconnect();
}

/** Per partition: [committed, end] (committed '-1' when none). */
async function committedAndEnds(group: string, topic: string): Promise<[string, string][]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const ends = await admin.fetchTopicOffsets(topic);
    return ends
      .sort((a, b) => a.partition - b.partition)
      .map(({ partition, high }) => [committed?.partitions.find((p) => p.partition === partition)?.offset ?? '-1', high]);
  } finally {
    await admin.disconnect();
  }
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - started;
}

describeEachClient('RecordConsumer, exactly-once: committed offsets past trailing markers', (kind: KafkaClientKind) => {
  let client: KafkaClient;
  beforeAll(() => {
    client = createClient({ brokers: testBrokers(), clientId: 'thorax-markers-itest', client: kind }, log);
  });

  it('an idle input partition ends committed at its end offset (markers and an aborted transaction passed), and a record written after that is still processed', async () => {
    const topic = `${base}-${kind}.in`;
    const out = `${base}-${kind}.out`;
    const group = `${base}-${kind}-stage`;
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        { topic, numPartitions: PARTITIONS },
        { topic: out, numPartitions: PARTITIONS },
      ],
    });
    await admin.disconnect();

    const first = Array.from({ length: 90 }, (_, i) => ({ key: `a-${i}`, partition: i % PARTITIONS }));
    await produceTransactions(topic, first, 10);
    // An aborted transaction at the end of partition 0: its records and its marker are passed too.
    await produceTransactions(topic, [{ key: 'aborted-0', partition: 0 }, { key: 'aborted-1', partition: 0 }], 2, true);

    const processed = new Map<string, number>();
    const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, retries: 10 });
    await producer.connect();
    const publisher = new KafkaPublisher(producer, { lingerMs: 2, maxBatchRecords: 500, serial: client.kind === 'kafkajs' });
    const consumer = new RecordConsumer<Buffer>(
      client,
      {
        groupId: group,
        topic,
        stage: 'preprocess',
        findingsTopic: `${out}.findings`,
        decode: (value: Buffer) => value,
        describe: (_m: unknown, position: { key: string | null }) => ({ id: position.key ?? '?', receivedAt: new Date(0) }),
        lagIntervalMs: 0,
      },
      {
        kind: 'single',
        handler: {
          async handle(delivery: Delivery<Buffer>) {
            const key = delivery.position.key ?? '';
            await publisher.publish([{ topic: out, key, value: delivery.message }]);
            processed.set(key, (processed.get(key) ?? 0) + 1);
          },
        },
      },
      publisher,
      new ThoraxMetrics('itest'),
      new HealthRegistry(),
      log,
      'exactly-once',
    );
    await consumer.start();
    try {
      await until(() => processed.size >= first.length, 60_000);
      const settledMs = await until(async () => (await committedAndEnds(group, topic)).every(([c, end]) => c === end), 15_000);
      const offsets = await committedAndEnds(group, topic);
      // 30 records and 9 commit markers per partition; partition 0 also 2 aborted records and their marker.
      expect(offsets).toEqual([
        ['42', '42'],
        ['39', '39'],
        ['39', '39'],
      ]);
      log.info({ settledMs }, 'committed offsets at the end offsets');

      // A record after the partition settled: processed, and the offset goes past its marker again.
      await produceTransactions(topic, [{ key: 'late', partition: 1 }], 1);
      await until(() => processed.has('late'), 30_000);
      await until(async () => (await committedAndEnds(group, topic)).every(([c, end]) => c === end), 15_000);
      expect(await committedAndEnds(group, topic)).toEqual([
        ['42', '42'],
        ['41', '41'],
        ['39', '39'],
      ]);
      expect([...processed.keys()].sort()).toEqual([...first.map((r) => r.key), 'late'].sort());
      expect([...processed.values()].every((n) => n === 1)).toBe(true);

      if (hasPartitionEndProbes(client)) {
        // The probe itself: the same range twice, the end, and a range that holds records.
        const probe = client.partitionEndProbe(group);
        try {
          expect(await probe.probe(topic, 0, '38')).toEqual({ kind: 'settled', end: '42' });
          expect(await probe.probe(topic, 0, '38')).toEqual({ kind: 'settled', end: '42' });
          expect(await probe.probe(topic, 0, '42')).toEqual({ kind: 'at-end' });
          expect(await probe.probe(topic, 1, '0')).toEqual({ kind: 'records', offset: '0' });
          // Partition 1: a marker at 38, the late record at 39, its marker at 40.
          expect(await probe.probe(topic, 1, '38')).toEqual({ kind: 'records', offset: '39' });
          expect(await probe.probe(topic, 1, '40')).toEqual({ kind: 'settled', end: '41' });
        } finally {
          await probe.close();
        }
      }
    } finally {
      await consumer.stop();
      await producer.disconnect();
    }
  });
});
