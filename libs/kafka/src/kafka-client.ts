import type { Logger } from '@thorax/observability';
import { Kafka, logLevel, type LogEntry } from 'kafkajs';

/** How a service reaches its Kafka cluster (docs/contract.md, Configuration). */
export interface KafkaClientOptions {
  brokers: string[];
  clientId: string;
}

/**
 * The one place a kafkajs client is built: brokers, client id, retry policy and kafkajs logs
 * routed through the service's structured logger. Every producer, consumer and admin client of
 * a service (and the topic provisioner) comes from a client made here.
 */
export function createKafkaClient(options: KafkaClientOptions, log: Logger): Kafka {
  const kafkaLog = log.child({ component: 'kafkajs' });
  return new Kafka({
    clientId: options.clientId,
    brokers: options.brokers,
    logLevel: logLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      const { message, ...extra } = entry.log;
      const level = entry.level <= logLevel.ERROR ? 'error' : entry.level === logLevel.WARN ? 'warn' : 'debug';
      kafkaLog[level]({ namespace: entry.namespace, ...extra }, message);
    },
    retry: { initialRetryTime: 300, retries: 10 },
  });
}
