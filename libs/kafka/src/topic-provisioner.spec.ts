import { readFileSync } from 'node:fs';
import path from 'node:path';
import { desiredTopics, type ExistingTopic, parseTopicsConf, planTopics, TopicProvisioningError, topicNameOverrides, type TopicSpec } from './topic-provisioner';

const REPO_CONF = path.join(__dirname, '..', '..', '..', 'deploy', 'kafka', 'topics.conf');
const stated = 'min.insync.replicas=2 cleanup.policy=delete retention.ms=60000 retention.bytes=-1';

describe('parseTopicsConf', () => {
  it('reads the repository topics.conf: production replication and retention on every topic', () => {
    const specs = parseTopicsConf(readFileSync(REPO_CONF, 'utf8'));
    expect(specs.map((s) => s.name)).toEqual([
      'thorax.studies.v1',
      'thorax.images.v1',
      'thorax.tensors.v1',
      'thorax.findings.v1',
      'thorax.findings.shadow.v1',
      'thorax.fhir.v1',
      'thorax.feedback.v1',
      'thorax.inference.control.v1',
      'thorax.dlq.replays.v1',
      'thorax.studies.v1.dlq',
      'thorax.images.v1.dlq',
      'thorax.tensors.v1.dlq',
      'thorax.findings.v1.dlq',
    ]);
    for (const spec of specs) {
      expect({ name: spec.name, rf: spec.replicationFactor, min: spec.configs['min.insync.replicas'] }).toEqual({ name: spec.name, rf: 3, min: '2' });
      expect(Number(spec.configs['retention.ms'])).toBeGreaterThanOrEqual(86_400_000);
    }
    const byName = new Map(specs.map((s) => [s.name, s]));
    expect(byName.get('thorax.studies.v1')).toMatchObject({ partitions: 6, configs: { 'max.message.bytes': '52428800' } });
    expect(byName.get('thorax.fhir.v1')?.configs['cleanup.policy']).toBe('compact,delete');
    // Findings outlive the inputs they come from; dead letters live long enough to replay.
    expect(Number(byName.get('thorax.findings.v1')?.configs['retention.ms'])).toBeGreaterThan(Number(byName.get('thorax.studies.v1')?.configs['retention.ms']));
    expect(Number(byName.get('thorax.studies.v1.dlq')?.configs['retention.ms'])).toBe(14 * 86_400_000);
  });

  it('ignores comments and blank lines and keeps every config', () => {
    const specs = parseTopicsConf(`# comment\n\n  a.topic 4 3 ${stated} segment.ms=1000  \n`);
    expect(specs).toEqual([
      {
        name: 'a.topic',
        partitions: 4,
        replicationFactor: 3,
        configs: { 'min.insync.replicas': '2', 'cleanup.policy': 'delete', 'retention.ms': '60000', 'retention.bytes': '-1', 'segment.ms': '1000' },
      },
    ]);
  });

  it.each([
    ['a.topic 0 3 ' + stated, /partitions of a.topic must be a positive integer/],
    ['a.topic 3 ' + stated, /replication factor of a.topic must be a positive integer/],
    ['a/topic 3 3 ' + stated, /not a valid topic name/],
    ['a.topic 3 3 min.insync.replicas=2', /does not state retention.ms, retention.bytes, cleanup.policy/],
    ['a.topic 3 2 ' + stated.replace('replicas=2', 'replicas=3'), /min.insync.replicas=3 above its replication factor 2/],
    ['a.topic 3 3 retention ' + stated, /expected <config>=<value>, got 'retention'/],
    [`a.topic 3 3 ${stated}\na.topic 3 3 ${stated}`, /topics.conf:2: topic a.topic is defined twice/],
    ['# nothing', /defines no topic/],
  ])('refuses %j', (text, message) => {
    expect(() => parseTopicsConf(text)).toThrow(TopicProvisioningError);
    expect(() => parseTopicsConf(text)).toThrow(message);
  });
});

describe('desiredTopics', () => {
  const specs = parseTopicsConf(`thorax.findings.v1 6 3 ${stated}\nthorax.findings.v1.dlq 3 3 ${stated}\nthorax.fhir.v1 3 3 ${stated}`);
  const names = topicNameOverrides({ TOPIC_STUDIES: 'thorax.studies.v1', TOPIC_IMAGES: 'thorax.images.v1', TOPIC_TENSORS: 'thorax.tensors.v1', TOPIC_FINDINGS: 'site-a.findings' });

  it('renames topics from the TOPIC_* variables, the DLQ following its topic', () => {
    expect(desiredTopics(specs, { names }).map((t) => t.name)).toEqual(['site-a.findings', 'site-a.findings.dlq', 'thorax.fhir.v1']);
  });

  it('keeps the file replication without overrides', () => {
    expect(desiredTopics(specs).map((t) => [t.replicationFactor, t.configs['min.insync.replicas']])).toEqual([
      [3, '2'],
      [3, '2'],
      [3, '2'],
    ]);
  });

  it('a replication factor override lowers min.insync.replicas to it', () => {
    const [one] = desiredTopics(specs, { replicationFactor: 1 });
    expect([one?.replicationFactor, one?.configs['min.insync.replicas']]).toEqual([1, '1']);
    const [five] = desiredTopics(specs, { replicationFactor: 5, minInsyncReplicas: 3 });
    expect([five?.replicationFactor, five?.configs['min.insync.replicas']]).toEqual([5, '3']);
  });

  it('refuses an explicit min.insync.replicas above the replication factor, and two topics on one name', () => {
    expect(() => desiredTopics(specs, { replicationFactor: 1, minInsyncReplicas: 2 })).toThrow(/above its replication factor 1/);
    expect(() => desiredTopics(specs, { names: { 'thorax.findings.v1': 'thorax.fhir.v1' } })).toThrow(/two topics onto thorax.fhir.v1/);
  });
});

describe('planTopics', () => {
  const want = (name: string, partitions = 6): TopicSpec => ({
    name,
    partitions,
    replicationFactor: 3,
    configs: { 'min.insync.replicas': '2', 'retention.ms': '60000' },
  });
  const has = (partitions: number, configs: Record<string, string>, replicationFactor = 3): ExistingTopic => ({ partitions, replicationFactor, configs });

  it('creates what is missing and leaves what matches alone', () => {
    const plan = planTopics([want('a'), want('b')], new Map([['b', has(6, { 'min.insync.replicas': '2', 'retention.ms': '60000' })]]));
    expect(plan.actions.map((a) => [a.kind, a.topic.name])).toEqual([['create', 'a']]);
    expect(plan.unchanged).toEqual(['b']);
    expect(plan.warnings).toEqual([]);
  });

  it('adds partitions but never removes them', () => {
    const configs = { 'min.insync.replicas': '2', 'retention.ms': '60000' };
    const plan = planTopics([want('a', 6), want('b', 3)], new Map([['a', has(3, configs)], ['b', has(6, configs)]]));
    expect(plan.actions).toEqual([{ kind: 'add-partitions', topic: want('a', 6), from: 3 }]);
    expect(plan.warnings).toEqual(['b has 6 partitions, more than the 3 wanted; partitions are never removed']);
    expect(plan.unchanged).toEqual(['b']);
  });

  it('reports config drift and keeps the topic’s other configs', () => {
    const plan = planTopics([want('a')], new Map([['a', has(6, { 'min.insync.replicas': '1', 'segment.ms': '1000' })]]));
    expect(plan.actions).toEqual([
      {
        kind: 'alter-configs',
        topic: want('a'),
        changes: [
          { name: 'min.insync.replicas', from: '1', to: '2' },
          { name: 'retention.ms', from: null, to: '60000' },
        ],
        configs: { 'min.insync.replicas': '2', 'retention.ms': '60000', 'segment.ms': '1000' },
      },
    ]);
  });

  it('warns about a replication factor it cannot change', () => {
    const plan = planTopics([want('a')], new Map([['a', has(6, { 'min.insync.replicas': '2', 'retention.ms': '60000' }, 1)]]));
    expect(plan.actions).toEqual([]);
    expect(plan.warnings).toEqual([expect.stringMatching(/^a has replication factor 1, 3 wanted; change it with a partition reassignment/)]);
  });
});
