/** RecordConsumer against a real broker (KAFKA_BROKERS, started by npm test), on each client of the port. */
import { decodeFindingsEvent, ImageAccepted, ThoraxError } from '@thorax/contracts';
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import { collect, produce, testBrokers } from '@thorax/testing';
import type { KafkaClientKind } from '@thorax/config';
import { Kafka, KafkaJSError, logLevel } from 'kafkajs';
import { type ClientProducer, createClient, type KafkaClient } from './client-port';
import { describeEachClient } from './client-matrix';
import { KafkaPublisher } from './kafka-publisher';
import {
  type BatchConsumerSpec,
  type BatchHandler,
  type Delivery,
  describeStudyMessage,
  type ItemResult,
  ITEM_OK,
  type MessageHandler,
  protobufDecoder,
} from './consumer-port';
import { RecordConsumer, type RecordHandling } from './record-consumer';

jest.setTimeout(90_000);

const kafka = new Kafka({ clientId: 'thorax-kafka-itest', brokers: testBrokers(), logLevel: logLevel.NOTHING });
const log = createLogger({ service: 'itest', version: '0', level: 'silent' });
const base = `itest-${Date.now().toString(36)}`;
/** The client under test and the prefix of its topics (set per client, see describeEachClient below). */
let client: KafkaClient;
let run = base;

function useClient(kind: KafkaClientKind): void {
  client = createClient({ brokers: testBrokers(), clientId: 'thorax-kafka-itest', client: kind }, log);
  run = `${base}-${kind}`;
}

/** A plain producer of the client under test (what the handlers publish through). */
async function connectedProducer(): Promise<ClientProducer> {
  const producer = client.producer({ idempotent: false, maxInFlightRequests: 5, retries: 10 });
  await producer.connect();
  return producer;
}

async function createTopics(...names: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: names.map((topic) => ({ topic, numPartitions: 3 })) });
  await admin.disconnect();
}

/** One-partition topics; with `maxMessageBytes`, refusing records above it (max.message.bytes). */
async function createOnePartitionTopics(maxMessageBytes: number | null, ...names: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const configEntries = maxMessageBytes === null ? [] : [{ name: 'max.message.bytes', value: String(maxMessageBytes) }];
  await admin.createTopics({ waitForLeaders: true, topics: names.map((topic) => ({ topic, numPartitions: 1, configEntries })) });
  await admin.disconnect();
}

/** Raw values, described by key (the tests' records carry no protobuf unless they say so). */
const RAW = {
  decode: (value: Buffer) => value,
  describe: (_m: unknown, position: { key: string | null }) => ({ id: position.key ?? '?', receivedAt: new Date(0) }),
};

const single = (handler: MessageHandler<Buffer>): RecordHandling<Buffer> => ({ kind: 'single', handler });
const keyOf = (d: Delivery<unknown>) => d.position.key ?? '';

async function withConsumer<T = Buffer>(
  topic: string,
  findingsTopic: string,
  handling: RecordHandling<T>,
  until: (metrics: ThoraxMetrics) => boolean | Promise<boolean>,
  group = `${topic}-group`,
  maxWaitMs = 60_000,
  spec: Partial<BatchConsumerSpec<T>> = {},
): Promise<{ metrics: ThoraxMetrics; health: HealthRegistry }> {
  const producer = await connectedProducer();
  const metrics = new ThoraxMetrics('itest');
  const health = new HealthRegistry();
  const consumer = new RecordConsumer<T>(
    client,
    {
      groupId: group,
      topic,
      stage: 'preprocess',
      findingsTopic,
      retry: { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 50 },
      lagIntervalMs: 0,
      ...(RAW as unknown as Pick<BatchConsumerSpec<T>, 'decode' | 'describe'>),
      ...spec,
    },
    handling,
    new KafkaPublisher(producer),
    metrics,
    health,
    log,
  );
  await consumer.start();
  const deadline = Date.now() + maxWaitMs;
  while (!(await until(metrics)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  await consumer.stop();
  await producer.disconnect();
  return { metrics, health };
}

async function counter(metrics: ThoraxMetrics, outcome: string): Promise<number> {
  const values = (await metrics.messages.get()).values;
  return values.filter((v) => v.labels['outcome'] === outcome).reduce((sum, v) => sum + v.value, 0);
}

describeEachClient('RecordConsumer', (kind) => {
  beforeAll(() => useClient(kind));

  it('ends every record in an explicit outcome: ok, retried then ok, or dead-lettered with an error event', async () => {
    const topic = `${run}.outcomes`;
    const findings = `${run}.outcomes.findings`;
    const out = `${run}.outcomes.out`;
    await createTopics(topic, `${topic}.dlq`, findings, out);
    await produce(kafka, topic, [
      {
        key: 'ok-1',
        value: Buffer.from('a'),
        headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      },
      { key: 'bad-1', value: Buffer.from('b') },
      { key: 'flaky-1', value: Buffer.from('c') },
    ]);
    const attempts = new Map<string, number>();
    const handled = new Set<string>();
    const publisherProducer = await connectedProducer();
    const publisher = new KafkaPublisher(publisherProducer);
    const forwarded = new Map<string, Record<string, string>>();
    const handler: MessageHandler<Buffer> = {
      async handle(delivery) {
        const key = keyOf(delivery);
        attempts.set(key, (attempts.get(key) ?? 0) + 1);
        if (key.startsWith('bad')) {
          handled.add(key);
          throw new ThoraxError('CORRUPT_IMAGE', 'cannot decode');
        }
        if (key.startsWith('flaky') && attempts.get(key) === 1) throw new Error('temporary glitch');
        await publisher.publish([{ topic: out, key, value: delivery.message }]);
        forwarded.set(key, delivery.forward);
        handled.add(key);
      },
    };
    const { metrics } = await withConsumer(topic, findings, single(handler), () => handled.size === 3);
    await publisherProducer.disconnect();

    expect(await counter(metrics, 'ok')).toBe(2);
    expect(await counter(metrics, 'retried')).toBe(1);
    expect(await counter(metrics, 'dead_lettered')).toBe(1);
    expect(attempts.get('bad-1')).toBe(1);
    // Handlers get the headers to forward: the sender's trace context, or a trace started here.
    expect(forwarded.get('ok-1')).toEqual({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });
    expect(forwarded.get('flaky-1')?.['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);

    const outputs = await collect(kafka, out, (rs) => rs.length >= 2, 15_000);
    expect(outputs.map((r) => r.key).sort()).toEqual(['flaky-1', 'ok-1']);
    const [dlq] = await collect(kafka, `${topic}.dlq`, (rs) => rs.length >= 1, 15_000);
    expect(dlq?.key).toBe('bad-1');
    expect(dlq?.value?.toString()).toBe('b');
    expect(dlq?.headers).toMatchObject({ 'thorax-error-code': 'CORRUPT_IMAGE', 'thorax-failed-stage': 'preprocess' });
    const events = await collect(kafka, findings, (rs) => rs.length >= 1, 15_000);
    expect(events).toHaveLength(1);
    const event = decodeFindingsEvent(events[0]?.value ?? null);
    expect(event).toMatchObject({
      id: 'bad-1',
      status: 'error',
      error: { code: 'CORRUPT_IMAGE', stage: 'preprocess' },
    });
  });

  it('never dead-letters on a broker failure: the record is redelivered and offsets commit only after success', async () => {
    const topic = `${run}.redeliver`;
    const findings = `${run}.redeliver.findings`;
    await createTopics(topic, `${topic}.dlq`, findings);
    await produce(kafka, topic, [{ key: 'img-1', value: Buffer.from('x') }]);
    let calls = 0;
    let done = false;
    const handler: MessageHandler<Buffer> = {
      async handle() {
        calls += 1;
        if (calls === 1) throw new KafkaJSError('not enough replicas', { retriable: true });
        done = true;
      },
    };
    const group = `${topic}-group`;
    const { metrics } = await withConsumer(topic, findings, single(handler), () => done, group);
    expect(calls).toBe(2);
    expect(await counter(metrics, 'dead_lettered')).toBe(0);
    expect(await counter(metrics, 'ok')).toBe(1);

    // Everything handled was committed: the same group, restarted, sees nothing new.
    let again = 0;
    await withConsumer(topic, findings, single({ handle: async () => void (again += 1) }), () => false, group, 8_000);
    expect(again).toBe(0);
  });

  it('dead-letters an input whose output the broker refuses as too large (PUBLISH_REJECTED) instead of stalling its partition', async () => {
    const topic = `${run}.refused`;
    const findings = `${run}.refused.findings`;
    const out = `${run}.refused.out`;
    // Outputs and dead letters above 2 KiB are refused; the input topic takes the broker default.
    await createOnePartitionTopics(2048, out, `${topic}.dlq`);
    await createOnePartitionTopics(null, topic, findings);
    await produce(kafka, topic, [
      { key: 'small-1', value: Buffer.alloc(10, 1) },
      { key: 'grow-1', value: Buffer.alloc(100, 2) }, // its 8 KiB output is refused; its DLQ copy fits
      { key: 'small-2', value: Buffer.alloc(10, 3) },
      { key: 'huge-1', value: Buffer.alloc(4096, 4) }, // output and DLQ copy both refused
      { key: 'small-3', value: Buffer.alloc(10, 5) },
    ]);
    const publisherProducer = await connectedProducer();
    // A linger long enough that the records handled together share requests with the refused ones.
    const publisher = new KafkaPublisher(publisherProducer, { lingerMs: 50, maxBatchRecords: 100 });
    const attempts = new Map<string, number>();
    const handler: MessageHandler<Buffer> = {
      async handle(delivery) {
        const key = keyOf(delivery);
        attempts.set(key, (attempts.get(key) ?? 0) + 1);
        const size = key.startsWith('small') ? 10 : 8192;
        await publisher.publish([{ topic: out, key, value: Buffer.alloc(size, 7) }]);
      },
    };
    const group = `${topic}-group`;
    const ended = async (m: ThoraxMetrics) => (await counter(m, 'ok')) + (await counter(m, 'dead_lettered')) >= 5;
    // Before PUBLISH_REJECTED, the refused records were redelivered forever and this timed out.
    const { metrics } = await withConsumer(topic, findings, single(handler), ended, group, 30_000, {
      maxInFlightPerPartition: 5,
    });
    await publisherProducer.disconnect();

    // Every record ended: three published, two dead-lettered, each handled once (no redelivery loop).
    expect(await counter(metrics, 'ok')).toBe(3);
    expect(await counter(metrics, 'dead_lettered')).toBe(2);
    expect(Object.fromEntries(attempts)).toEqual({ 'small-1': 1, 'grow-1': 1, 'small-2': 1, 'huge-1': 1, 'small-3': 1 });

    const outputs = await collect(kafka, out, (rs) => rs.length >= 3, 15_000);
    expect(outputs.map((r) => r.key).sort()).toEqual(['small-1', 'small-2', 'small-3']);
    const dlq = await collect(kafka, `${topic}.dlq`, (rs) => rs.length >= 2, 15_000);
    expect(dlq.map((r) => r.key).sort()).toEqual(['grow-1', 'huge-1']);
    const grow = dlq.find((r) => r.key === 'grow-1')!;
    expect(grow.value).toEqual(Buffer.alloc(100, 2));
    expect(grow.headers).toMatchObject({ 'thorax-error-code': 'PUBLISH_REJECTED', 'thorax-failed-stage': 'preprocess' });
    expect(grow.headers['thorax-error-message']).toContain('MESSAGE_TOO_LARGE');
    expect(grow.headers['thorax-value-omitted']).toBeUndefined();
    // The 4 KiB input does not fit the DLQ topic either: its copy goes without the value.
    const huge = dlq.find((r) => r.key === 'huge-1')!;
    expect(huge.value?.length ?? 0).toBe(0);
    expect(huge.headers).toMatchObject({ 'thorax-error-code': 'PUBLISH_REJECTED', 'thorax-value-omitted': '4096' });
    const events = (await collect(kafka, findings, (rs) => rs.length >= 2, 15_000)).map((r) => decodeFindingsEvent(r.value));
    expect(events.map((e) => [e.id, e.status, e.error?.code]).sort()).toEqual([
      ['grow-1', 'error', 'PUBLISH_REJECTED'],
      ['huge-1', 'error', 'PUBLISH_REJECTED'],
    ]);

    // The partition moved on: everything was committed, a restarted member sees nothing.
    let again = 0;
    await withConsumer(topic, findings, single({ handle: async () => void (again += 1) }), () => false, group, 8_000);
    expect(again).toBe(0);
  });

  it('dead-letters a value that does not decode as INVALID_MESSAGE, describing it by key; the handler never sees it', async () => {
    const topic = `${run}.decode`;
    const findings = `${run}.decode.findings`;
    await createTopics(topic, `${topic}.dlq`, findings);
    const good: ImageAccepted = ImageAccepted.fromPartial({ id: 'img-good', contentType: 'image/png', data: Buffer.from([1]) });
    await produce(kafka, topic, [
      { key: 'img-good', value: Buffer.from(ImageAccepted.encode(good).finish()) },
      { key: 'img-garbage', value: Buffer.from([0xff, 0xff, 0xff, 0xff]) },
      { key: 'img-empty', value: Buffer.alloc(0) },
    ]);
    const seen: string[] = [];
    const handling: RecordHandling<ImageAccepted> = {
      kind: 'single',
      handler: { handle: async (d) => void seen.push(d.message.id) },
    };
    const ended = async (m: ThoraxMetrics) => (await counter(m, 'ok')) + (await counter(m, 'dead_lettered')) >= 3;
    const { metrics } = await withConsumer(topic, findings, handling, ended, `${topic}-group`, 30_000, {
      decode: protobufDecoder(ImageAccepted, 'thorax.v1.ImageAccepted', 'preprocess'),
      describe: describeStudyMessage,
    });
    expect(seen).toEqual(['img-good']);
    expect(await counter(metrics, 'dead_lettered')).toBe(2);
    const events = (await collect(kafka, findings, (rs) => rs.length >= 2, 15_000)).map((r) => decodeFindingsEvent(r.value));
    expect(events.map((e) => [e.id, e.error?.code]).sort()).toEqual([
      ['img-empty', 'INVALID_MESSAGE'],
      ['img-garbage', 'INVALID_MESSAGE'],
    ]);
  });

  describe('batch handler', () => {
    /** A store that keeps what handleBatch made durable, counting writes per key. */
    function batchStore(fail: (key: string, call: number) => unknown) {
      const stored = new Map<string, number>();
      const calls: { keys: string[]; partitions: Set<number> }[] = [];
      const handler: BatchHandler<Buffer> = {
        async handleBatch(deliveries) {
          calls.push({ keys: deliveries.map(keyOf), partitions: new Set(deliveries.map((d) => d.position.partition)) });
          const results: ItemResult[] = [];
          for (const d of deliveries) {
            const error = fail(keyOf(d), calls.length);
            if (error) {
              results.push({ ok: false, error });
              continue;
            }
            stored.set(keyOf(d), (stored.get(keyOf(d)) ?? 0) + 1);
            results.push(ITEM_OK);
          }
          return results;
        },
      };
      return { stored, calls, handling: { kind: 'batch', handler } as RecordHandling<Buffer> };
    }

    const keys = Array.from({ length: 60 }, (_, i) => `img-${i}`);

    it('stores many records of all partitions per call; a failing record gets its own outcome, its batch mates are stored once', async () => {
      const topic = `${run}.batch`;
      const findings = `${run}.batch.findings`;
      await createTopics(topic, `${topic}.dlq`, findings);
      await produce(kafka, topic, keys.map((key) => ({ key, value: Buffer.from(key) })));
      const attempts = new Map<string, number>();
      const { stored, calls, handling } = batchStore((key) => {
        attempts.set(key, (attempts.get(key) ?? 0) + 1);
        if (key === 'img-7') return new ThoraxError('INVALID_MESSAGE', 'not a findings event');
        if (key === 'img-13' && attempts.get(key) === 1) return new Error('deadlock detected');
        return null;
      });
      const group = `${topic}-group`;
      const ended = async (m: ThoraxMetrics) => (await counter(m, 'ok')) + (await counter(m, 'dead_lettered')) >= 60;
      const { metrics } = await withConsumer(topic, findings, handling, ended, group, 60_000, {
        partitionsConsumedConcurrently: 3,
        maxBatchRecords: 100,
        lingerMs: 20,
      });

      expect(await counter(metrics, 'ok')).toBe(59);
      expect(await counter(metrics, 'retried')).toBe(1);
      expect(await counter(metrics, 'dead_lettered')).toBe(1);
      // Every other record stored exactly once; the failing ones were tried alone after their batch.
      expect([...stored.keys()].sort()).toEqual(keys.filter((k) => k !== 'img-7').sort());
      expect([...stored.values()].every((n) => n === 1)).toBe(true);
      expect(attempts.get('img-7')).toBe(1);
      expect(attempts.get('img-13')).toBe(2);
      expect(calls.find((c) => c.keys.includes('img-13') && c.keys.length === 1)).toBeDefined();
      // Batches really are batches, across partitions.
      expect(Math.max(...calls.map((c) => c.keys.length))).toBeGreaterThan(10);
      expect(Math.max(...calls.map((c) => c.partitions.size))).toBeGreaterThan(1);
      const [dlq] = await collect(kafka, `${topic}.dlq`, (rs) => rs.length >= 1, 15_000);
      expect(dlq?.key).toBe('img-7');
      expect(dlq?.headers).toMatchObject({ 'thorax-error-code': 'INVALID_MESSAGE' });

      // All committed: a restarted member gets nothing.
      const again = batchStore(() => null);
      await withConsumer(topic, findings, again.handling, () => false, group, 8_000);
      expect(again.calls).toHaveLength(0);
    });

    it('a crash before the commit redelivers the whole batch, and nothing is dead-lettered or lost', async () => {
      const topic = `${run}.batch-crash`;
      const findings = `${run}.batch-crash.findings`;
      await createTopics(topic, `${topic}.dlq`, findings);
      await produce(kafka, topic, keys.map((key) => ({ key, value: Buffer.from(key) })));
      // The first call writes its records and then the broker fails before the offsets commit.
      let crashed = false;
      const stored = new Map<string, number>();
      const handler: BatchHandler<Buffer> = {
        async handleBatch(deliveries) {
          for (const d of deliveries) stored.set(keyOf(d), (stored.get(keyOf(d)) ?? 0) + 1);
          if (!crashed) {
            crashed = true;
            throw new KafkaJSError('the coordinator is not available', { retriable: true });
          }
          return deliveries.map(() => ITEM_OK);
        },
      };
      const group = `${topic}-group`;
      const allStored = async (m: ThoraxMetrics) => stored.size === keys.length && (await counter(m, 'ok')) >= keys.length;
      const { metrics } = await withConsumer(topic, findings, { kind: 'batch', handler }, allStored, group, 60_000, {
        partitionsConsumedConcurrently: 3,
      });
      expect(crashed).toBe(true);
      // Batches of other partitions that were stored but not yet committed may come again too.
      expect(await counter(metrics, 'ok')).toBeGreaterThanOrEqual(keys.length);
      expect(await counter(metrics, 'dead_lettered')).toBe(0);
      expect([...stored.keys()].sort()).toEqual([...keys].sort());
      // The crashed batch was delivered again (at least once), the rest once.
      expect([...stored.values()].some((n) => n >= 2)).toBe(true);
      const dlq = await collect(kafka, `${topic}.dlq`, () => false, 3_000);
      expect(dlq).toHaveLength(0);
    });
  });
});
