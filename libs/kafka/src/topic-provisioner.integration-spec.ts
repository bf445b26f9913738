/**
 * The topic provisioner against the real test broker (KAFKA_BROKERS, one node): creates, is a
 * no-op the second time, adds partitions, fixes config drift while keeping other topic configs.
 * Topics carry a per-run prefix, and are deleted afterwards.
 */
import { createLogger } from '@thorax/observability';
import { testBrokers } from '@thorax/testing';
import { type Admin, ConfigResourceTypes, ConfigSource } from 'kafkajs';
import { createKafkaClient } from './kafka-client';
import { desiredTopics, parseTopicsConf, provisionTopics, type TopicSpec } from './topic-provisioner';

jest.setTimeout(120_000);

const RUN = `it-provision-${Date.now().toString(36)}`;
const log = createLogger({ service: 'topics-test', version: '0', level: 'silent' });
let admin: Admin;

const conf = (partitions: number, retentionMs: number) =>
  parseTopicsConf(
    [
      `${RUN}.events 3 3 min.insync.replicas=2 cleanup.policy=delete retention.ms=${retentionMs} retention.bytes=-1`,
      `${RUN}.events.dlq ${partitions} 3 min.insync.replicas=2 cleanup.policy=compact,delete retention.ms=604800000 retention.bytes=1048576`,
    ].join('\n'),
  );
// One test broker: replication 1 (min.insync.replicas follows it down).
const provision = (topics: TopicSpec[]) => provisionTopics(admin, desiredTopics(topics, { replicationFactor: 1 }), { waitTimeoutMs: 30_000 }, log);

async function topicConfigs(name: string): Promise<Record<string, string>> {
  const { resources } = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: ConfigResourceTypes.TOPIC, name }] });
  return Object.fromEntries(
    (resources[0]?.configEntries ?? []).filter((e) => e.configSource === ConfigSource.TOPIC_CONFIG).map((e) => [e.configName, e.configValue]),
  );
}

beforeAll(async () => {
  admin = createKafkaClient({ brokers: testBrokers(), clientId: 'thorax-topics-test' }, log).admin();
  await admin.connect();
});

afterAll(async () => {
  const mine = (await admin.listTopics()).filter((t) => t.startsWith(RUN));
  if (mine.length > 0) await admin.deleteTopics({ topics: mine });
  await admin.disconnect();
});

describe('provisionTopics on a real broker', () => {
  it('creates the topics with their partitions and configs, then changes nothing on a second run', async () => {
    const first = await provision(conf(2, 3_600_000));
    expect(first).toMatchObject({ brokers: 1, created: [`${RUN}.events`, `${RUN}.events.dlq`], unchanged: [], warnings: [] });
    const { topics } = await admin.fetchTopicMetadata({ topics: [`${RUN}.events`, `${RUN}.events.dlq`] });
    const described = topics.map((t) => [t.name, t.partitions.length, t.partitions[0]?.replicas.length]);
    expect(described.sort((a, b) => String(a[0]).localeCompare(String(b[0])))).toEqual([
      [`${RUN}.events`, 3, 1],
      [`${RUN}.events.dlq`, 2, 1],
    ]);
    expect(await topicConfigs(`${RUN}.events.dlq`)).toEqual({
      'min.insync.replicas': '1',
      'cleanup.policy': 'compact,delete',
      'retention.ms': '604800000',
      'retention.bytes': '1048576',
    });

    const second = await provision(conf(2, 3_600_000));
    expect(second).toMatchObject({ created: [], partitionsAdded: [], configsAltered: [], unchanged: [`${RUN}.events`, `${RUN}.events.dlq`] });
  });

  it('adds partitions, fixes config drift, keeps configs it does not own, never removes partitions', async () => {
    // Someone changed a config by hand and added one of their own.
    await admin.alterConfigs({
      validateOnly: false,
      resources: [
        {
          type: ConfigResourceTypes.TOPIC,
          name: `${RUN}.events`,
          configEntries: [
            { name: 'min.insync.replicas', value: '1' },
            { name: 'cleanup.policy', value: 'delete' },
            { name: 'retention.ms', value: '1000' },
            { name: 'retention.bytes', value: '-1' },
            { name: 'segment.ms', value: '7200000' },
          ],
        },
      ],
    });
    const report = await provision(conf(4, 3_600_000));
    expect(report).toMatchObject({ created: [], partitionsAdded: [`${RUN}.events.dlq`], configsAltered: [`${RUN}.events`], unchanged: [] });
    expect(await topicConfigs(`${RUN}.events`)).toEqual({
      'min.insync.replicas': '1',
      'cleanup.policy': 'delete',
      'retention.ms': '3600000',
      'retention.bytes': '-1',
      'segment.ms': '7200000',
    });
    const { topics } = await admin.fetchTopicMetadata({ topics: [`${RUN}.events.dlq`] });
    expect(topics[0]?.partitions).toHaveLength(4);

    const fewer = await provision(conf(2, 3_600_000));
    expect(fewer.partitionsAdded).toEqual([]);
    expect(fewer.warnings).toEqual([`${RUN}.events.dlq has 4 partitions, more than the 2 wanted; partitions are never removed`]);
  });

  it('fails with a clear message when the cluster has fewer brokers than the replication factor', async () => {
    const three = parseTopicsConf(`${RUN}.never 1 3 min.insync.replicas=2 cleanup.policy=delete retention.ms=1000 retention.bytes=-1`);
    await expect(provisionTopics(admin, three, { waitTimeoutMs: 1_000 }, log)).rejects.toThrow(
      /not ready after 1s: the cluster has 1 broker\(s\) and topics.conf asks for replication factor 3/,
    );
    expect(await admin.listTopics()).not.toContain(`${RUN}.never`);
  });
});
