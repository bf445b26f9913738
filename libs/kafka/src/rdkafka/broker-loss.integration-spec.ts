/**
 * The port's admin across a broker loss, on each client: committed offsets are read while the only
 * broker is SIGKILLed (reads fail or wait) and after it restarts on its data (the same offsets,
 * and the process is still there). On librdkafka the Admin API's ListConsumerGroupOffsets aborted
 * the process at that point (see committed-offsets.ts); a regression kills the Jest worker.
 *
 * Starts its own broker with scripts/kafka.sh on THORAX_BROKER_LOSS_PORT_BASE (default 22150:
 * client port, controller port +1); needs `bash scripts/kafka.sh fetch`'s jars.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { createLogger } from '@thorax/observability';
import { Kafka, logLevel } from 'kafkajs';
import { createClient } from '../client-port';
import { describeEachClient } from '../client-matrix';

const exec = promisify(execFile);
const ROOT = path.resolve(__dirname, '../../../..');
const BASE = Number(process.env['THORAX_BROKER_LOSS_PORT_BASE'] ?? 22150);
const BROKER = `127.0.0.1:${BASE}`;
const kafkaEnv = {
  KAFKA_PORT: String(BASE),
  KAFKA_CONTROLLER_PORT: String(BASE + 1),
  KAFKA_STATE_DIR: path.join(ROOT, '.cache', `kafka-broker-loss-${BASE}`),
  KAFKA_SKIP_TOPICS: '1',
  KAFKA_HEAP_OPTS: '-Xms128m -Xmx384m',
  KAFKA_START_TIMEOUT: '180',
};
const TOPIC = 'broker-loss.offsets';
const log = createLogger({ service: 'broker-loss-itest', version: '0', level: 'silent' });
jest.setTimeout(300_000);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function kafkaScript(...args: string[]): Promise<void> {
  await exec('bash', [path.join(ROOT, 'scripts', 'kafka.sh'), ...args], { env: { ...process.env, ...kafkaEnv }, timeout: 240_000 });
}

/** SIGKILL of the broker's JVM (a crash: no controlled shutdown), its exit awaited. */
async function killBroker(): Promise<void> {
  const pid = Number(readFileSync(path.join(kafkaEnv.KAFKA_STATE_DIR, 'kafka.pid'), 'utf8').replace(/\D/g, ''));
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100; i += 1) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(100);
  }
  throw new Error(`broker ${pid} survived SIGKILL`);
}

/** Offsets committed for the groups below: partition 1 of GROUP at 5, nothing elsewhere. */
const EXPECTED = [
  { partition: 0, offset: '-1' },
  { partition: 1, offset: '5' },
  { partition: 2, offset: '-1' },
];

beforeAll(async () => {
  await kafkaScript('reset');
  await kafkaScript('start');
  const kafka = new Kafka({ clientId: 'broker-loss-itest', brokers: [BROKER], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic: TOPIC, messages: Array.from({ length: 10 }, (_, i) => ({ partition: 1, value: String(i) })) });
  await producer.disconnect();
  for (const groupId of ['broker-loss-kafkajs', 'broker-loss-librdkafka']) {
    await admin.setOffsets({ groupId, topic: TOPIC, partitions: [{ partition: 1, offset: '5' }] });
  }
  await admin.disconnect();
}, 300_000);

afterAll(async () => {
  await kafkaScript('stop').catch(() => undefined);
}, 120_000);

describeEachClient('admin committed offsets across a broker loss', (kind) => {
  const groupId = `broker-loss-${kind}`;

  it('fails or waits while the broker is down, answers the same offsets after its restart, and the process survives', async () => {
    const client = createClient({ brokers: [BROKER], clientId: `broker-loss-${kind}`, client: kind }, log);
    const admin = client.admin();
    await admin.connect();
    try {
      expect(await admin.fetchOffsets(groupId, TOPIC)).toEqual(EXPECTED);
      // The lag gauge's kind of read (a reader of its own on librdkafka) answers the same.
      expect(await admin.fetchOffsets(groupId, TOPIC, { stable: false })).toEqual(EXPECTED);

      await killBroker();
      // Reads of both kinds during the outage: each fails (timed out) or is still waiting when
      // the broker returns.
      const during = Array.from({ length: 4 }, (_, i) => admin.fetchOffsets(groupId, TOPIC, { stable: i % 2 === 0 }).then(
        (offsets) => ({ offsets, error: null as unknown }),
        (error: unknown) => ({ offsets: null, error }),
      ));
      await Promise.race([Promise.all(during), sleep(15_000)]);
      await kafkaScript('start');

      // After the restart: the same offsets within a minute, and again several seconds later
      // (librdkafka completed its timed-out coordinator requests in that window).
      const deadline = Date.now() + 60_000;
      let after: unknown = null;
      while (Date.now() < deadline) {
        try {
          after = await admin.fetchOffsets(groupId, TOPIC);
          break;
        } catch (error) {
          after = error;
          await sleep(1_000);
        }
      }
      expect(after).toEqual(EXPECTED);
      await sleep(5_000);
      expect(await admin.fetchOffsets(groupId, TOPIC)).toEqual(EXPECTED);
      expect(await admin.fetchOffsets(groupId, TOPIC, { stable: false })).toEqual(EXPECTED);
      for (const outcome of await Promise.all(during)) {
        if (outcome.offsets) expect(outcome.offsets).toEqual(EXPECTED);
        else expect(outcome.error).toBeInstanceOf(Error);
      }
    } finally {
      await admin.disconnect();
    }
  });
});
