import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseTopicsConf } from './topic-provisioner';

const DEPLOY = path.join(__dirname, '..', '..', '..', 'deploy', 'kafka');

interface KafkaTopicDoc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels: Record<string, string> };
  spec: { topicName: string; partitions: number; replicas: number; config: Record<string, unknown> };
}

describe('deploy/kafka/strimzi-topics.yaml', () => {
  it('declares exactly the topics of topics.conf as Strimzi KafkaTopics (regenerate: python3 scripts/strimzi-topics.py)', () => {
    const specs = parseTopicsConf(readFileSync(path.join(DEPLOY, 'topics.conf'), 'utf8'));
    const docs = parseAllDocuments(readFileSync(path.join(DEPLOY, 'strimzi-topics.yaml'), 'utf8')).map((d) => d.toJS() as KafkaTopicDoc);
    expect(
      docs.map((d) => ({
        apiVersion: d.apiVersion,
        kind: d.kind,
        name: d.metadata.name,
        cluster: typeof d.metadata.labels['strimzi.io/cluster'],
        topicName: d.spec.topicName,
        partitions: d.spec.partitions,
        replicas: d.spec.replicas,
        config: Object.fromEntries(Object.entries(d.spec.config).map(([k, v]) => [k, String(v)])),
      })),
    ).toEqual(
      specs.map((s) => ({
        apiVersion: 'kafka.strimzi.io/v1beta2',
        kind: 'KafkaTopic',
        name: s.name,
        cluster: 'string',
        topicName: s.name,
        partitions: s.partitions,
        replicas: s.replicationFactor,
        config: s.configs,
      })),
    );
  });
});
