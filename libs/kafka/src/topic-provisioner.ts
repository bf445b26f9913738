import { TOPIC_NAMES } from '@thorax/config';
import type { Logger } from '@thorax/observability';
import { type Admin, ConfigResourceTypes, ConfigSource } from 'kafkajs';

/** One topic of deploy/kafka/topics.conf. */
export interface TopicSpec {
  name: string;
  partitions: number;
  replicationFactor: number;
  /** Topic-level configs, min.insync.replicas among them. */
  configs: Record<string, string>;
}

/** A topics.conf that cannot be used, or a cluster the topics cannot be provisioned on. */
export class TopicProvisioningError extends Error {
  override readonly name = 'TopicProvisioningError';
}

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;
const CONFIG_NAME = /^[a-z][a-z0-9.]*$/;
const REQUIRED_CONFIGS = ['min.insync.replicas', 'retention.ms', 'retention.bytes', 'cleanup.policy'];

/**
 * Parses topics.conf: `<name> <partitions> <replication-factor> <config>=<value> ...` per line,
 * '#' comments and blank lines ignored. Every topic must state min.insync.replicas (at most its
 * replication factor), retention.ms, retention.bytes and cleanup.policy.
 */
export function parseTopicsConf(text: string, source = 'topics.conf'): TopicSpec[] {
  const specs: TopicSpec[] = [];
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${source}:${index + 1}`;
    const [name = '', partitions = '', replicas = '', ...pairs] = line.split(/\s+/);
    if (!TOPIC_NAME.test(name)) throw new TopicProvisioningError(`${where}: '${name}' is not a valid topic name`);
    if (seen.has(name)) throw new TopicProvisioningError(`${where}: topic ${name} is defined twice`);
    seen.add(name);
    const spec: TopicSpec = {
      name,
      partitions: count(partitions, `${where}: partitions of ${name}`),
      replicationFactor: count(replicas, `${where}: replication factor of ${name}`),
      configs: {},
    };
    for (const pair of pairs) {
      const eq = pair.indexOf('=');
      const key = eq > 0 ? pair.slice(0, eq) : '';
      const value = eq > 0 ? pair.slice(eq + 1) : '';
      if (!CONFIG_NAME.test(key) || value === '') throw new TopicProvisioningError(`${where}: expected <config>=<value>, got '${pair}'`);
      if (key in spec.configs) throw new TopicProvisioningError(`${where}: ${key} is set twice for ${name}`);
      spec.configs[key] = value;
    }
    const missing = REQUIRED_CONFIGS.filter((key) => !(key in spec.configs));
    if (missing.length > 0) throw new TopicProvisioningError(`${where}: ${name} does not state ${missing.join(', ')}`);
    checkMinInsync(spec, where);
    specs.push(spec);
  });
  if (specs.length === 0) throw new TopicProvisioningError(`${source}: defines no topic`);
  return specs;
}

function count(value: string, what: string): number {
  if (!/^[1-9][0-9]{0,4}$/.test(value)) throw new TopicProvisioningError(`${what} must be a positive integer, got '${value}'`);
  return Number(value);
}

function checkMinInsync(spec: TopicSpec, where: string): void {
  const min = count(spec.configs['min.insync.replicas'] ?? '', `${where}: min.insync.replicas of ${spec.name}`);
  if (min > spec.replicationFactor) {
    throw new TopicProvisioningError(
      `${where}: ${spec.name} has min.insync.replicas=${min} above its replication factor ${spec.replicationFactor}; no write could succeed`,
    );
  }
}

/** How the file's topics are adapted to one deployment. */
export interface TopicOverrides {
  /** Base-name replacements (TOPIC_STUDIES …): default base name → deployed name; `.dlq` topics follow. */
  names?: Record<string, string>;
  /** Replication factor for every topic (KAFKA_TOPIC_REPLICATION_FACTOR), e.g. 1 for a dev broker. */
  replicationFactor?: number;
  /** min.insync.replicas for every topic (KAFKA_TOPIC_MIN_INSYNC_REPLICAS). */
  minInsyncReplicas?: number;
}

/** The default topic names that the TOPIC_* variables replace. */
export function topicNameOverrides(env: {
  TOPIC_STUDIES: string;
  TOPIC_IMAGES: string;
  TOPIC_TENSORS: string;
  TOPIC_FINDINGS: string;
}): Record<string, string> {
  return {
    [TOPIC_NAMES.studies]: env.TOPIC_STUDIES,
    [TOPIC_NAMES.images]: env.TOPIC_IMAGES,
    [TOPIC_NAMES.tensors]: env.TOPIC_TENSORS,
    [TOPIC_NAMES.findings]: env.TOPIC_FINDINGS,
  };
}

/**
 * The topics this deployment wants: names replaced, replication overrides applied. With only a
 * replication factor given, min.insync.replicas is lowered to it where the file's is higher (one
 * broker cannot have two in-sync replicas); an explicit min.insync.replicas above the factor is
 * an error.
 */
export function desiredTopics(specs: TopicSpec[], overrides: TopicOverrides = {}): TopicSpec[] {
  const out = specs.map((spec) => {
    const dlq = spec.name.endsWith('.dlq');
    const base = dlq ? spec.name.slice(0, -'.dlq'.length) : spec.name;
    const renamed = overrides.names?.[base] ?? base;
    const replicationFactor = overrides.replicationFactor ?? spec.replicationFactor;
    const fileMin = Number(spec.configs['min.insync.replicas']);
    const min = overrides.minInsyncReplicas ?? Math.min(fileMin, replicationFactor);
    const topic: TopicSpec = {
      name: dlq ? `${renamed}.dlq` : renamed,
      partitions: spec.partitions,
      replicationFactor,
      configs: { ...spec.configs, 'min.insync.replicas': String(min) },
    };
    checkMinInsync(topic, 'overrides');
    return topic;
  });
  const names = out.map((t) => t.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new TopicProvisioningError(`topic name overrides map two topics onto ${twice}`);
  return out;
}

/** What the cluster holds for a topic: partitions, replication and its topic-level configs. */
export interface ExistingTopic {
  partitions: number;
  /** Replicas per partition (the smallest, if they differ). */
  replicationFactor: number;
  /** Configs set on the topic itself (not broker defaults). */
  configs: Record<string, string>;
}

export type TopicAction =
  | { kind: 'create'; topic: TopicSpec }
  | { kind: 'add-partitions'; topic: TopicSpec; from: number }
  | {
      kind: 'alter-configs';
      topic: TopicSpec;
      changes: { name: string; from: string | null; to: string }[];
      /** The topic's complete config set after the change (its other topic-level configs kept). */
      configs: Record<string, string>;
    };

export interface TopicPlan {
  actions: TopicAction[];
  /** Differences the provisioner does not change by itself (fewer partitions, replication factor). */
  warnings: string[];
  unchanged: string[];
}

/**
 * Compares the wanted topics with the cluster's. Missing topics are created, partitions only
 * ever increased, topic configs that differ (or are only inherited) set to the file's values.
 */
export function planTopics(desired: TopicSpec[], existing: ReadonlyMap<string, ExistingTopic>): TopicPlan {
  const plan: TopicPlan = { actions: [], warnings: [], unchanged: [] };
  for (const topic of desired) {
    const current = existing.get(topic.name);
    if (!current) {
      plan.actions.push({ kind: 'create', topic });
      continue;
    }
    let changed = false;
    if (current.partitions < topic.partitions) {
      plan.actions.push({ kind: 'add-partitions', topic, from: current.partitions });
      changed = true;
    } else if (current.partitions > topic.partitions) {
      plan.warnings.push(`${topic.name} has ${current.partitions} partitions, more than the ${topic.partitions} wanted; partitions are never removed`);
    }
    if (current.replicationFactor !== topic.replicationFactor) {
      plan.warnings.push(
        `${topic.name} has replication factor ${current.replicationFactor}, ${topic.replicationFactor} wanted; change it with a partition reassignment (kafka-reassign-partitions), not by the provisioner`,
      );
    }
    const changes = Object.entries(topic.configs)
      .filter(([name, value]) => current.configs[name] !== value)
      .map(([name, to]) => ({ name, from: current.configs[name] ?? null, to }));
    if (changes.length > 0) {
      plan.actions.push({ kind: 'alter-configs', topic, changes, configs: { ...current.configs, ...topic.configs } });
      changed = true;
    }
    if (!changed) plan.unchanged.push(topic.name);
  }
  return plan;
}

export interface ProvisionOptions {
  /** How long to wait for the cluster to answer with enough brokers, ms. */
  waitTimeoutMs: number;
  /** Only report the plan. */
  dryRun?: boolean;
}

export interface ProvisionReport {
  brokers: number;
  created: string[];
  partitionsAdded: string[];
  configsAltered: string[];
  unchanged: string[];
  warnings: string[];
}

/**
 * Brings a cluster's topics in line with the wanted ones and reports what it did. Waits until
 * the cluster answers with at least as many brokers as the largest replication factor; a second
 * run against the same cluster changes nothing.
 */
export async function provisionTopics(admin: Admin, desired: TopicSpec[], options: ProvisionOptions, log: Logger): Promise<ProvisionReport> {
  const brokers = await waitForCluster(admin, Math.max(...desired.map((t) => t.replicationFactor)), options.waitTimeoutMs, log);
  const plan = planTopics(desired, await describeTopics(admin, desired.map((t) => t.name)));
  for (const warning of plan.warnings) log.warn({ warning }, 'topic differs from topics.conf; not changed');
  const report: ProvisionReport = { brokers, created: [], partitionsAdded: [], configsAltered: [], unchanged: plan.unchanged, warnings: plan.warnings };
  for (const action of plan.actions) {
    const { topic } = action;
    const fields = { topic: topic.name, dryRun: options.dryRun === true };
    if (action.kind === 'create') {
      log.info({ ...fields, partitions: topic.partitions, replicationFactor: topic.replicationFactor, configs: topic.configs }, 'creating topic');
      if (!options.dryRun) {
        // kafkajs's own waitForLeaders gives up when a broker has not yet heard of the new topic
        // (UNKNOWN_TOPIC_OR_PARTITION on a multi-broker cluster); wait for leaders here instead.
        await admin.createTopics({
          waitForLeaders: false,
          topics: [
            {
              topic: topic.name,
              numPartitions: topic.partitions,
              replicationFactor: topic.replicationFactor,
              configEntries: Object.entries(topic.configs).map(([name, value]) => ({ name, value })),
            },
          ],
        });
        await waitForLeaders(admin, topic, options.waitTimeoutMs);
      }
      report.created.push(topic.name);
    } else if (action.kind === 'add-partitions') {
      log.info({ ...fields, from: action.from, to: topic.partitions }, 'adding partitions');
      if (!options.dryRun) await admin.createPartitions({ topicPartitions: [{ topic: topic.name, count: topic.partitions }] });
      report.partitionsAdded.push(topic.name);
    } else {
      log.info({ ...fields, changes: action.changes }, 'topic config drift; setting the configs of topics.conf');
      if (!options.dryRun) {
        await admin.alterConfigs({
          validateOnly: false,
          resources: [
            {
              type: ConfigResourceTypes.TOPIC,
              name: topic.name,
              configEntries: Object.entries(action.configs).map(([name, value]) => ({ name, value })),
            },
          ],
        });
      }
      report.configsAltered.push(topic.name);
    }
  }
  return report;
}

/** Until every partition of a new topic has a leader (metadata reaches every broker in time). */
async function waitForLeaders(admin: Admin, topic: TopicSpec, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic.name] });
      const partitions = topics[0]?.partitions ?? [];
      if (partitions.length === topic.partitions && partitions.every((p) => p.leader >= 0)) return;
      last = `${partitions.filter((p) => p.leader >= 0).length} of ${topic.partitions} partitions have a leader`;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() >= deadline) throw new TopicProvisioningError(`${topic.name} was created but has no leaders after ${Math.round(timeoutMs / 1000)}s: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** A promise that rejects after `ms` unless `work` settles first (kafkajs retries connects for minutes). */
function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${Math.round(ms / 1000)}s`)), Math.max(0, ms));
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

async function waitForCluster(admin: Admin, brokersNeeded: number, timeoutMs: number, log: Logger): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  for (let attempt = 1; ; attempt += 1) {
    try {
      // each attempt gets at least 2 s, so the last one before the deadline can still succeed
      await within(admin.connect(), Math.max(2000, deadline - Date.now()));
      const { brokers } = await within(admin.describeCluster(), Math.max(2000, deadline - Date.now()));
      if (brokers.length >= brokersNeeded) return brokers.length;
      last = `the cluster has ${brokers.length} broker(s) and topics.conf asks for replication factor ${brokersNeeded}`;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() >= deadline) {
      throw new TopicProvisioningError(
        `Kafka cluster not ready after ${Math.round(timeoutMs / 1000)}s: ${last} (a smaller development cluster sets KAFKA_TOPIC_REPLICATION_FACTOR and KAFKA_TOPIC_MIN_INSYNC_REPLICAS)`,
      );
    }
    log.info({ attempt, reason: last }, 'waiting for the Kafka cluster');
    await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 500 * attempt)));
  }
}

async function describeTopics(admin: Admin, names: string[]): Promise<Map<string, ExistingTopic>> {
  const present = new Set(await admin.listTopics());
  const wanted = names.filter((n) => present.has(n));
  const existing = new Map<string, ExistingTopic>();
  if (wanted.length === 0) return existing;
  const { topics } = await admin.fetchTopicMetadata({ topics: wanted });
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: wanted.map((name) => ({ type: ConfigResourceTypes.TOPIC, name })),
  });
  for (const meta of topics) {
    const resource = described.resources.find((r) => r.resourceName === meta.name);
    if (!resource || resource.errorCode !== 0) {
      throw new TopicProvisioningError(`describing the configs of ${meta.name} failed: ${resource?.errorMessage ?? 'no answer'}`);
    }
    existing.set(meta.name, {
      partitions: meta.partitions.length,
      replicationFactor: Math.min(...meta.partitions.map((p) => p.replicas.length)),
      configs: Object.fromEntries(
        resource.configEntries.filter((e) => e.configSource === ConfigSource.TOPIC_CONFIG).map((e) => [e.configName, e.configValue]),
      ),
    });
  }
  return existing;
}
