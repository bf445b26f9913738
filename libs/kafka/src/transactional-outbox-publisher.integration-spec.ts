/** TransactionalOutboxPublisher against a real broker (KAFKA_BROKERS): fencing, read_committed reading, refusals. */
import { createLogger } from '@thorax/observability';
import { testBrokers } from '@thorax/testing';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import type { OutgoingRecord } from './records';
import { type CommittedRecord, outboxFailure, TransactionalOutboxPublisher } from './transactional-outbox-publisher';

jest.setTimeout(120_000);

const kafka = new Kafka({ clientId: 'thorax-outbox-itest', brokers: testBrokers(), logLevel: logLevel.NOTHING });
const log = createLogger({ service: 'itest', version: '0', level: 'silent' });
const RUN = `outbox-${Date.now().toString(36)}`;
const TOPIC = `${RUN}.fhir`;
const SMALL_TOPIC = `${RUN}.small`;

const record = (topic: string, key: string, bytes = 100): OutgoingRecord => ({
  topic,
  key,
  value: Buffer.alloc(bytes, 0x61),
  headers: { 'thorax-fhir-version': '1' },
});

async function read(writer: TransactionalOutboxPublisher, sinceMs = 0): Promise<CommittedRecord[]> {
  const records: CommittedRecord[] = [];
  await writer.readCommitted(sinceMs, (r) => records.push(r), 60_000);
  return records;
}

const writers: TransactionalOutboxPublisher[] = [];
function writer(topic: string, transactionalId: string): TransactionalOutboxPublisher {
  const w = new TransactionalOutboxPublisher(kafka, { topic, transactionalId }, log);
  writers.push(w);
  return w;
}

beforeAll(async () => {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    waitForLeaders: true,
    topics: [
      { topic: TOPIC, numPartitions: 3 },
      { topic: SMALL_TOPIC, numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '20000' }] },
    ],
  });
  await admin.disconnect();
});

afterAll(async () => {
  await Promise.all(writers.map((w) => w.close()));
});

describe('TransactionalOutboxPublisher', () => {
  it('a new holder fences the old one: its open transaction is aborted, its later commits fail, readers see only what committed', async () => {
    const id = `${RUN}-fence`;
    const first = writer(TOPIC, id);
    await first.fence();
    await first.publish([record(TOPIC, 'a'), record(TOPIC, 'b')]);

    // A zombie with the same id, a transaction open with a record in it.
    const zombie = kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
    await zombie.connect();
    const open = await zombie.transaction();
    await open.send({ topic: TOPIC, messages: [{ key: 'zombie', value: Buffer.from('z') }] });

    const second = writer(TOPIC, id);
    await second.fence();
    const seen = await read(second);
    expect(seen.map((r) => r.key).sort()).toEqual(['a', 'b']);
    expect(seen.every((r) => r.headers['thorax-fhir-version'] === '1')).toBe(true);

    const zombieCommit = await open.commit().then(() => null, (error: unknown) => error);
    expect(outboxFailure(zombieCommit)).toBe('fenced');
    const oldCommit = await first.publish([record(TOPIC, 'c')]).then(() => null, (error: unknown) => error);
    expect(outboxFailure(oldCommit)).toBe('fenced');
    await zombie.disconnect();

    await second.publish([record(TOPIC, 'd')]);
    expect((await read(second)).map((r) => r.key).sort()).toEqual(['a', 'b', 'd']);
  });

  it('reads from the first record at or after the given time, up to the end as of the call', async () => {
    const w = writer(TOPIC, `${RUN}-since`);
    await w.fence();
    await w.publish([record(TOPIC, 'before')]);
    await new Promise((r) => setTimeout(r, 50));
    const since = Date.now();
    await new Promise((r) => setTimeout(r, 5));
    await w.publish([record(TOPIC, 'after-1'), record(TOPIC, 'after-2')]);
    const keys = (await read(w, since)).map((r) => r.key).sort();
    expect(keys).toEqual(['after-1', 'after-2']);
    // Nothing written since then: nothing to read, and no waiting for it.
    const started = Date.now();
    expect(await read(w, Date.now() + 60_000)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('splits a large transaction into requests under the topic limit; a record over the limit is refused and the producer goes on', async () => {
    // 30 records of 5 kB: 150 kB, far above the topic's 20 kB per batch, in one transaction.
    const many = Array.from({ length: 30 }, (_, i) => record(SMALL_TOPIC, `k${i}`, 5_000));
    const limited = new TransactionalOutboxPublisher(kafka, { topic: SMALL_TOPIC, transactionalId: `${RUN}-small`, maxRequestBytes: 15_000 }, log);
    writers.push(limited);
    await limited.fence();
    await limited.publish(many);
    const refused = await limited.publish([record(SMALL_TOPIC, 'huge', 50_000)]).then(() => null, (error: unknown) => error);
    expect(outboxFailure(refused)).toBe('refused');
    await limited.publish([record(SMALL_TOPIC, 'after')]);
    const keys = (await read(limited)).map((r) => r.key);
    expect(keys).toHaveLength(31);
    expect(keys).not.toContain('huge');
    expect(keys).toContain('after');
  });
});
