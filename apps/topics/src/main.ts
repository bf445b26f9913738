import { kafkaClientOptions, loadConfig } from '@thorax/config';
import { createKafkaClient, desiredTopics, parseTopicsConf, provisionTopics, topicNameOverrides } from '@thorax/kafka';
import { createLogger } from '@thorax/observability';
import { readFileSync } from 'node:fs';
import { topicsConfigSchema } from './config';
import { SERVICE_VERSION } from './version';

// One-shot (`thorax topics`): create or fix the topics of topics.conf on the cluster, then exit 0.
const config = loadConfig(topicsConfigSchema, process.env);
const log = createLogger({ service: 'topics', version: SERVICE_VERSION, level: config.LOG_LEVEL });
let disconnect = (): Promise<void> => Promise.resolve();

async function main(): Promise<void> {
  const topics = desiredTopics(parseTopicsConf(readFileSync(config.TOPICS_CONF, 'utf8'), config.TOPICS_CONF), {
    names: topicNameOverrides(config),
    replicationFactor: config.KAFKA_TOPIC_REPLICATION_FACTOR,
    minInsyncReplicas: config.KAFKA_TOPIC_MIN_INSYNC_REPLICAS,
  });
  const admin = createKafkaClient(kafkaClientOptions(config, 'thorax-topics'), log).admin();
  disconnect = () => admin.disconnect();
  const report = await provisionTopics(
    admin,
    topics,
    { waitTimeoutMs: config.TOPICS_WAIT_TIMEOUT_MS, dryRun: config.TOPICS_DRY_RUN },
    log,
  );
  log.info({ file: config.TOPICS_CONF, ...report, dryRun: config.TOPICS_DRY_RUN }, 'topics provisioned');
}

main()
  .catch((error: unknown) => {
    log.fatal({ err: error }, `topic provisioning failed: ${(error as Error).message}`);
    process.exitCode = 1;
  })
  // kafkajs may still be retrying a connect in the background: exit once disconnected (or after 5 s).
  .finally(async () => {
    await Promise.race([
      disconnect().catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, 5000).unref()),
    ]);
    process.exit();
  });
