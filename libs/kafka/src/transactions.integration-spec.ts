/** Exactly-once RecordConsumer (KAFKA_DELIVERY=exactly-once) against a real broker (KAFKA_BROKERS), on each client of the port. */
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import { collect, type PlainRecord, produce, testBrokers } from '@thorax/testing';
import type { KafkaClientKind } from '@thorax/config';
import { Kafka, KafkaJSError, logLevel } from 'kafkajs';
import { createClient, type KafkaClient, type ProducerSettings } from './client-port';
import { describeEachClient } from './client-matrix';
import type { BatchConsumerSpec, Delivery } from './consumer-port';
import { KafkaPublisher } from './kafka-publisher';
import { RecordConsumer, type RecordHandling } from './record-consumer';

jest.setTimeout(120_000);

const kafka = new Kafka({ clientId: 'thorax-eos-itest', brokers: testBrokers(), logLevel: logLevel.NOTHING });
const log = createLogger({ service: 'itest', version: '0', level: process.env['THORAX_EOS_TEST_LOG'] === '1' ? 'info' : 'silent' });
const base = `eos-${Date.now().toString(36)}`;
/** The client under test and the prefix of its topics (set per client, see describeEachClient below). */
let client: KafkaClient;
let run = base;

function useClient(kind: KafkaClientKind): void {
  client = createClient({ brokers: testBrokers(), clientId: 'thorax-eos-itest', client: kind }, log);
  run = `${base}-${kind}`;
}

async function createTopics(partitions: number, ...names: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: names.map((topic) => ({ topic, numPartitions: partitions })) });
  await admin.disconnect();
}

const RAW = {
  decode: (value: Buffer) => value,
  describe: (_m: unknown, position: { key: string | null }) => ({ id: position.key ?? '?', receivedAt: new Date(0) }),
};

/**
 * The client under test, its transactions' commits counted: the same producers, consumers and
 * broker, seen through a wrapper of `producer` only.
 */
function countingCommits(inner: KafkaClient): { client: KafkaClient; commits: () => number } {
  let commits = 0;
  const wrapped = new Proxy(inner, {
    get(target, property, receiver) {
      if (property !== 'producer') return Reflect.get(target, property, receiver) as unknown;
      return (settings: ProducerSettings) => {
        const producer = target.producer(settings);
        return {
          ...producer,
          transaction: async () => {
            const transaction = await producer.transaction();
            return {
              ...transaction,
              commit: async () => {
                await transaction.commit();
                commits += 1;
              },
            };
          },
        };
      };
    },
  });
  return { client: wrapped, commits: () => commits };
}

/** A consumer of `topic` with exactly-once delivery; the publisher is the service's ordinary one. */
async function startConsumer(
  topic: string,
  group: string,
  handling: (publisher: KafkaPublisher) => RecordHandling<Buffer>,
  spec: Partial<BatchConsumerSpec<Buffer>> = {},
  consumerClient: KafkaClient = client,
  metrics = new ThoraxMetrics('itest'),
): Promise<{ stop: () => Promise<void> }> {
  // The service's producer as KafkaConnection makes it (serial for kafkajs's idempotence only).
  const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, retries: 10 });
  await producer.connect();
  const publisher = new KafkaPublisher(producer, { lingerMs: 2, maxBatchRecords: 500, serial: client.kind === 'kafkajs' });
  const consumer = new RecordConsumer<Buffer>(
    consumerClient,
    {
      groupId: group,
      topic,
      stage: 'preprocess',
      findingsTopic: `${topic}.findings`,
      retry: { maxAttempts: 2, initialBackoffMs: 10, maxBackoffMs: 20 },
      lagIntervalMs: 0,
      ...RAW,
      ...spec,
    },
    handling(publisher),
    publisher,
    metrics,
    new HealthRegistry(),
    log,
    'exactly-once',
  );
  await consumer.start();
  return {
    stop: async () => {
      await consumer.stop();
      await producer.disconnect();
    },
  };
}

async function until(check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (!check()) throw new Error('condition not met in time');
}

/** Everything on `topic`, including records of aborted transactions (read_uncommitted). */
async function collectUncommitted(topic: string, expected: number): Promise<PlainRecord[]> {
  const records: PlainRecord[] = [];
  const consumer = kafka.consumer({ groupId: `${topic}-uncommitted-${Date.now()}`, readUncommitted: true });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      records.push({ key: message.key?.toString() ?? null, value: message.value, headers: {}, partition, offset: message.offset });
    },
  });
  await until(() => records.length >= expected, 20_000).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 1_000));
  await consumer.disconnect();
  return records;
}

async function committedOffsets(group: string, topic: string): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  await admin.disconnect();
  return (offsets?.partitions ?? []).sort((a, b) => a.partition - b.partition).map((p) => p.offset);
}

function counts(records: PlainRecord[]): Map<string, number> {
  const byKey = new Map<string, number>();
  for (const r of records) byKey.set(r.key ?? '', (byKey.get(r.key ?? '') ?? 0) + 1);
  return byKey;
}

const inputs = (n: number, prefix = 'img') => Array.from({ length: n }, (_, i) => ({ key: `${prefix}-${i}`, value: Buffer.from(String(i)) }));

describeEachClient('RecordConsumer, exactly-once', (kind) => {
  beforeAll(() => useClient(kind));

  it('a broker failure after outputs went out aborts their transaction: read_committed sees each output once, the offsets commit with them', async () => {
    const topic = `${run}.abort`;
    const out = `${run}.abort.out`;
    const group = `${topic}-group`;
    await createTopics(1, topic, `${topic}.dlq`, `${topic}.findings`, out);
    await produce(kafka, topic, inputs(20));
    const attempts = new Map<string, number>();
    const consumer = await startConsumer(topic, group, (publisher) => ({
      kind: 'single',
      handler: {
        async handle(delivery: Delivery<Buffer>) {
          const key = delivery.position.key ?? '';
          attempts.set(key, (attempts.get(key) ?? 0) + 1);
          // Sent at once (not buffered), so the aborted copies are really in the log.
          await publisher.publish([{ topic: out, key, value: delivery.message }], { alone: true });
          if (key === 'img-10' && attempts.get(key) === 1) throw new KafkaJSError('leader went away', { retriable: true });
        },
      },
    }));
    await until(() => [...Array(20).keys()].every((i) => (attempts.get(`img-${i}`) ?? 0) >= 1) && (attempts.get('img-10') ?? 0) >= 2);
    const committed = await collect(kafka, out, (rs) => rs.length >= 20, 30_000);
    await consumer.stop();

    expect(committed).toHaveLength(20);
    expect([...counts(committed).values()].every((n) => n === 1)).toBe(true);
    // The aborted transaction's records exist (a read_uncommitted consumer sees them again) ...
    const all = await collectUncommitted(out, 21);
    expect(all.length).toBeGreaterThan(20);
    // ... and img-10 was handled twice, the records before it in its transaction too.
    expect(attempts.get('img-10')).toBe(2);
    expect(await committedOffsets(group, topic)).toEqual(['20']);

    // Restarted, the group has nothing left to do.
    let again = 0;
    const restarted = await startConsumer(topic, group, () => ({ kind: 'single', handler: { handle: async () => void (again += 1) } }));
    await new Promise((r) => setTimeout(r, 6_000));
    await restarted.stop();
    expect(again).toBe(0);
  });

  it('fences a zombie: its transaction is aborted when another holder of the partition starts, and the holder does the work once', async () => {
    const topic = `${run}.fence`;
    const out = `${run}.fence.out`;
    const group = `${topic}-group`;
    await createTopics(1, topic, `${topic}.dlq`, `${topic}.findings`, out);
    await produce(kafka, topic, inputs(10));
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let zombieHandled = 0;
    const zombie = await startConsumer(topic, group, (publisher) => ({
      kind: 'single',
      handler: {
        async handle(delivery: Delivery<Buffer>) {
          await publisher.publish([{ topic: out, key: delivery.position.key ?? '', value: delivery.message }], { alone: true });
          zombieHandled += 1;
          if (zombieHandled === 5) await held; // stalls mid-transaction, as a paused process would
        },
      },
    }));
    await until(() => zombieHandled === 5);
    // Another instance takes the partition's transactional id over (what its consumer does on assignment).
    const usurper = kafka.producer({ transactionalId: `${group}-${topic}-0`, idempotent: true, maxInFlightRequests: 1 });
    await usurper.connect();
    const txn = await usurper.transaction();
    await txn.abort();
    release();
    await new Promise((r) => setTimeout(r, 3_000));
    // The zombie's stalled transaction was refused: only the outputs of inputs whose offsets were
    // committed before it are visible (none with kafkajs, which handed over all ten in one fetch;
    // librdkafka's first fetches are smaller and may have committed a transaction or two).
    const visible = await collect(kafka, out, () => false, 3_000, { quietMs: 1_000 });
    const [offset] = await committedOffsets(group, topic);
    const committedInputs = Math.max(0, Number(offset));
    expect(committedInputs).toBeLessThan(5);
    expect(visible.map((r) => r.key)).toEqual(inputs(committedInputs).map((i) => i.key));
    await zombie.stop();
    await usurper.disconnect();

    // The next holder processes every input once.
    const holder = await startConsumer(topic, group, (publisher) => ({
      kind: 'single',
      handler: { handle: (d: Delivery<Buffer>) => publisher.publish([{ topic: out, key: d.position.key ?? '', value: d.message }]) },
    }));
    const committed = await collect(kafka, out, (rs) => rs.length >= 10, 30_000);
    await holder.stop();
    expect(committed).toHaveLength(10);
    expect(counts(committed).size).toBe(10);
    expect(await committedOffsets(group, topic)).toEqual(['10']);
  });

  it('an output the broker refuses as too large dead-letters its input only; the transaction commits the rest once', async () => {
    const topic = `${run}.refused`;
    const out = `${run}.refused.out`;
    const group = `${topic}-group`;
    const admin = kafka.admin();
    await admin.connect();
    // Outputs and dead letters above 2 KiB are refused; the input and findings topics take the default.
    const small = [{ name: 'max.message.bytes', value: '2048' }];
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        { topic, numPartitions: 1 },
        { topic: `${topic}.findings`, numPartitions: 1 },
        { topic: out, numPartitions: 1, configEntries: small },
        { topic: `${topic}.dlq`, numPartitions: 1, configEntries: small },
      ],
    });
    await admin.disconnect();
    await produce(kafka, topic, [
      { key: 'small-1', value: Buffer.alloc(10, 1) },
      { key: 'grow-1', value: Buffer.alloc(100, 2) }, // its 8 KiB output is refused; its DLQ copy fits
      { key: 'small-2', value: Buffer.alloc(10, 3) },
      { key: 'huge-1', value: Buffer.alloc(4096, 4) }, // output and DLQ copy both refused
      { key: 'small-3', value: Buffer.alloc(10, 5) },
    ]);
    const consumer = await startConsumer(
      topic,
      group,
      (publisher) => ({
        kind: 'single',
        handler: {
          handle: (d: Delivery<Buffer>) => {
            const key = d.position.key ?? '';
            return publisher.publish([{ topic: out, key, value: Buffer.alloc(key.startsWith('small') ? 10 : 8192, 7) }]);
          },
        },
      }),
      { maxInFlightPerPartition: 5 },
    );
    const dlq = await collect(kafka, `${topic}.dlq`, (rs) => rs.length >= 2, 60_000);
    const outputs = await collect(kafka, out, (rs) => rs.length >= 3, 30_000, { quietMs: 2_000 });
    const events = await collect(kafka, `${topic}.findings`, (rs) => rs.length >= 2, 30_000, { quietMs: 2_000 });
    const offsets = await committedOffsets(group, topic);
    await consumer.stop();
    expect(outputs.map((r) => r.key).sort()).toEqual(['small-1', 'small-2', 'small-3']);
    expect(dlq.map((r) => r.key).sort()).toEqual(['grow-1', 'huge-1']);
    expect(dlq.find((r) => r.key === 'grow-1')?.headers).toMatchObject({ 'thorax-error-code': 'PUBLISH_REJECTED' });
    expect(dlq.find((r) => r.key === 'huge-1')?.headers).toMatchObject({ 'thorax-error-code': 'PUBLISH_REJECTED', 'thorax-value-omitted': '4096' });
    expect(events.map((r) => r.key).sort()).toEqual(['grow-1', 'huge-1']);
    expect(offsets).toEqual(['5']);
  });

  it('batch handlers: one transaction per partition, dead letters and error events included, each exactly once', async () => {
    const topic = `${run}.batch`;
    const out = `${run}.batch.out`;
    const group = `${topic}-group`;
    await createTopics(3, topic, `${topic}.dlq`, `${topic}.findings`, out);
    await produce(kafka, topic, [...inputs(60), { key: 'poison-1', value: Buffer.from('x') }]);
    let calls = 0;
    let failedOnce = false;
    const seen = new Set<string>();
    const consumer = await startConsumer(
      topic,
      group,
      (publisher) => ({
        kind: 'batch',
        handler: {
          async handleBatch(deliveries: readonly Delivery<Buffer>[]) {
            calls += 1;
            const partitions = new Set(deliveries.map((d) => d.position.partition));
            if (partitions.size !== 1) throw new Error(`a batch spans partitions ${[...partitions].join(',')}`);
            const ok = deliveries.filter((d) => d.position.key !== 'poison-1');
            await publisher.publish(ok.map((d) => ({ topic: out, key: d.position.key ?? '', value: d.message })));
            for (const d of deliveries) seen.add(d.position.key ?? '');
            if (!failedOnce && deliveries.length > 1) {
              failedOnce = true;
              throw new KafkaJSError('coordinator moved', { retriable: true });
            }
            return deliveries.map((d) =>
              d.position.key === 'poison-1' ? { ok: false as const, error: new Error('cannot handle') } : { ok: true as const },
            );
          },
        },
      }),
      { partitionsConsumedConcurrently: 3 },
    );
    await until(() => seen.size === 61);
    const committed = await collect(kafka, out, (rs) => rs.length >= 60, 30_000);
    const dlq = await collect(kafka, `${topic}.dlq`, (rs) => rs.length >= 1, 30_000);
    const events = await collect(kafka, `${topic}.findings`, (rs) => rs.length >= 1, 30_000);
    await consumer.stop();
    expect(calls).toBeGreaterThan(1);
    expect(committed).toHaveLength(60);
    expect(counts(committed).size).toBe(60);
    expect(dlq.map((r) => r.key)).toEqual(['poison-1']);
    expect(events.map((r) => r.key)).toEqual(['poison-1']);
    const offsets = await committedOffsets(group, topic);
    expect(offsets.reduce((sum, o) => sum + Number(o), 0)).toBe(61);
  });

  it('inputs that publish nothing commit their offsets outside transactions; a dead letter among them commits in one, and no offset goes back', async () => {
    const topic = `${run}.offsets-only`;
    const group = `${topic}-group`;
    await createTopics(1, topic, `${topic}.dlq`, `${topic}.findings`);
    const counted = countingCommits(client);
    const metrics = new ThoraxMetrics('itest');
    const handled = new Map<string, number>();
    const consumer = await startConsumer(
      topic,
      group,
      () => ({
        kind: 'single',
        handler: {
          async handle(delivery: Delivery<Buffer>) {
            const key = delivery.position.key ?? '';
            handled.set(key, (handled.get(key) ?? 0) + 1);
            // What results does: stored elsewhere, nothing published.
            if (key.startsWith('poison')) throw new Error('cannot handle');
          },
        },
      }),
      {},
      counted.client,
      metrics,
    );
    let dlq: PlainRecord[];
    let events: PlainRecord[];
    try {
      const committedAt = async (offset: string) => {
        for (let i = 0; i < 150 && (await committedOffsets(group, topic))[0] !== offset; i += 1) await new Promise((r) => setTimeout(r, 200));
        expect(await committedOffsets(group, topic)).toEqual([offset]);
      };
      // Three fetches at least: outputs-free inputs, a dead letter, outputs-free inputs again.
      await produce(kafka, topic, inputs(10, 'first'));
      await committedAt('10');
      expect(counted.commits()).toBe(0);
      await produce(kafka, topic, [{ key: 'poison-1', value: Buffer.from('x') }]);
      await committedAt('11');
      expect(counted.commits()).toBe(1);
      await produce(kafka, topic, inputs(10, 'second'));
      await committedAt('21');
      // The transaction's offset (11) reached the group coordinator before the plain commit (21)
      // and does not replace it when its markers land.
      await new Promise((r) => setTimeout(r, 2_000));
      expect(await committedOffsets(group, topic)).toEqual(['21']);
      expect(counted.commits()).toBe(1);
      dlq = await collect(kafka, `${topic}.dlq`, (rs) => rs.length >= 1, 30_000, { quietMs: 1_000 });
      events = await collect(kafka, `${topic}.findings`, (rs) => rs.length >= 1, 30_000, { quietMs: 1_000 });
    } finally {
      await consumer.stop();
    }
    expect(dlq.map((r) => r.key)).toEqual(['poison-1']);
    expect(events.map((r) => r.key)).toEqual(['poison-1']);
    expect(handled.size).toBe(21);
    expect([...handled].filter(([key, n]) => !key.startsWith('poison') && n !== 1)).toEqual([]);
    // The service's own count (thorax_consumer_commits_total) agrees: one transaction, plain
    // commits for the rest (one per fetch at least), nothing abandoned.
    const byKind = Object.fromEntries((await metrics.consumerCommits.get()).values.map((v) => [v.labels['kind'], v.value]));
    expect(byKind['transaction']).toBe(1);
    expect(byKind['offsets']).toBeGreaterThanOrEqual(2);
    expect(byKind['abandoned']).toBeUndefined();

    // Restarted, the group has nothing left to do.
    let again = 0;
    const restarted = await startConsumer(topic, group, () => ({ kind: 'single', handler: { handle: async () => void (again += 1) } }));
    await new Promise((r) => setTimeout(r, 6_000));
    await restarted.stop();
    expect(again).toBe(0);
  });

  it('offsets inside an open transaction: the lag gauge\'s read answers at once with the last committed ones, a stable read (librdkafka) waits for the commit', async () => {
    const topic = `${run}.open-offsets`;
    const group = `${topic}-group`;
    await createTopics(1, topic);
    const producer = client.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      retries: 10,
      transactional: { id: `${topic}-tx`, timeoutMs: 60_000 },
    });
    const admin = client.admin();
    // librdkafka takes the group from a consumer of this client (connected, never subscribed).
    const member = client.consumer({ groupId: group, sessionTimeoutMs: 10_000, heartbeatIntervalMs: 1_000, autoCommit: false, fromBeginning: true });
    await Promise.all([producer.connect(), admin.connect(), member.connect()]);
    try {
      const none = [{ partition: 0, offset: '-1' }];
      const seven = [{ partition: 0, offset: '7' }];
      const transaction = await producer.transaction();
      await transaction.sendOffsets({ consumerGroupId: group, topics: [{ topic, partitions: [{ partition: 0, offset: '7' }] }] });
      expect(await admin.fetchOffsets(group, topic, { stable: false })).toEqual(none);
      let stableSettled = false;
      const stable = admin.fetchOffsets(group, topic).finally(() => (stableSettled = true));
      await new Promise((r) => setTimeout(r, 1_500));
      // kafkajs never asks for stable offsets: it answers at once, without the open transaction's.
      expect(stableSettled).toBe(kind === 'kafkajs');
      await transaction.commit();
      expect(await stable).toEqual(kind === 'kafkajs' ? none : seven);
      // The commit markers reach the group coordinator shortly after the commit returns.
      let last: unknown = null;
      for (let i = 0; i < 50 && JSON.stringify(last) !== JSON.stringify(seven); i += 1) {
        if (i > 0) await new Promise((r) => setTimeout(r, 200));
        last = await admin.fetchOffsets(group, topic, { stable: false });
      }
      expect(last).toEqual(seven);
    } finally {
      await Promise.all([producer.disconnect(), admin.disconnect(), member.disconnect()]);
    }
  });
});
