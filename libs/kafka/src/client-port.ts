import type { KafkaClientKind } from '@thorax/config';
import type { Logger } from '@thorax/observability';
import { type EachBatchPayload, type EachMessagePayload, type Kafka, Partitioners } from 'kafkajs';
import { createKafkaClient, type KafkaClientHooks, type KafkaClientOptions } from './kafka-client';
import { createRdkafkaClient } from './rdkafka/rdkafka-client';

/**
 * The part of a Kafka client library that libs/kafka uses: producers (idempotent, transactional),
 * group consumers and the offsets part of the admin API. Two implementations: kafkajs
 * (`kafkajsClient`) and librdkafka through @confluentinc/kafka-javascript (`createRdkafkaClient`),
 * chosen by KAFKA_CLIENT (`createClient`). The topic provisioner and the operator tools keep the
 * kafkajs admin client (createKafkaClient) whatever KAFKA_CLIENT says: the librdkafka admin API
 * of that package has no describeConfigs, alterConfigs or createPartitions.
 */
export interface KafkaClient {
  readonly kind: KafkaClientKind;
  producer(settings: ProducerSettings, hooks?: ProducerHooks): ClientProducer;
  consumer(settings: ConsumerSettings, hooks?: ConsumerHooks): ClientConsumer;
  admin(): ClientAdmin;
}

export interface ProducerSettings {
  idempotent: boolean;
  /** Requests in flight per broker connection (1 with kafkajs's idempotent producer). */
  maxInFlightRequests: number;
  /** Retries of a failed request before the send fails. */
  retries: number;
  /** A transactional producer: its id and Kafka's timeout for a transaction left open. */
  transactional?: { id: string; timeoutMs: number };
}

export interface ProducerHooks {
  /** The producer connected (true) or lost its connection (false). */
  onConnection?: (connected: boolean) => void;
}

export interface TopicMessages {
  topic: string;
  messages: { key: string; value: Buffer; headers: Record<string, string> }[];
}

export interface OffsetsToCommit {
  consumerGroupId: string;
  topics: { topic: string; partitions: { partition: number; offset: string }[] }[];
}

/** A send: every record acknowledged by all in-sync replicas (acks=all) or the promise rejects. */
export interface RecordSender {
  sendBatch(batch: { topicMessages: TopicMessages[] }): Promise<unknown>;
  /**
   * The client gathers concurrent sends into requests itself (librdkafka's linger.ms), so callers
   * need not coalesce them; each send's failure is its own.
   */
  readonly batchesItself?: boolean;
}

export interface ClientTransaction extends RecordSender {
  /** Adds the consumer group's input offsets to the transaction. */
  sendOffsets(offsets: OffsetsToCommit): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
  isActive(): boolean;
}

export interface ClientProducer extends RecordSender {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  /** Begins a transaction (the first one also fences earlier holders of the transactional id). */
  transaction(): Promise<ClientTransaction>;
}

export interface ConsumerSettings {
  groupId: string;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  maxBytesPerPartition?: number;
  maxWaitTimeMs?: number;
  /** Commit resolved offsets every `autoCommitIntervalMs`; false: offsets only in transactions. */
  autoCommit: boolean;
  autoCommitIntervalMs?: number;
  /** Where a partition without a committed offset starts. */
  fromBeginning: boolean;
  /** kafkajs: restart the consumer after any crash, not only after retriable ones. */
  restartOnFailure?: boolean;
  /** Most records one eachBatch call carries (librdkafka; kafkajs hands over whole fetches). */
  maxBatchRecords?: number;
}

export interface ConsumerHooks {
  /** The group assigned partitions to this member (topic → partitions). */
  onAssigned?: (assignment: Record<string, number[]>) => void;
  /** The group is rebalancing (partitions may be taken away). */
  onRebalancing?: () => void;
  /** The consumer stopped on an error; `restart` says whether the client restarts it itself. */
  onCrash?: (error: Error, restart: boolean) => void;
  onDisconnect?: () => void;
  /**
   * A fetch of the partition ended; `batchSize` 0 with offsets: it held only transaction markers
   * or aborted records (kafkajs only: librdkafka's position moves past them by itself).
   */
  onBatchEnd?: (end: { topic: string; partition: number; batchSize: number; firstOffset: string | null; lastOffset: string }) => void;
}

/** The payloads kafkajs defines; the librdkafka client hands over the same shape. */
export type BatchPayload = EachBatchPayload;
export type MessagePayload = EachMessagePayload;

export interface ConsumerRun {
  partitionsConsumedConcurrently: number;
  eachBatchAutoResolve?: boolean;
  eachBatch?: (payload: BatchPayload) => Promise<void>;
  eachMessage?: (payload: MessagePayload) => Promise<void>;
}

export interface ClientConsumer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  subscribe(topic: string): Promise<void>;
  run(run: ConsumerRun): Promise<void>;
  seek(position: { topic: string; partition: number; offset: string }): void;
  pause(topic: string): void;
  resume(topic: string): void;
  /**
   * Commits these offsets (each the next offset to consume) for the group, outside any
   * transaction. The group coordinator refuses them from a member of an older generation (one
   * the group has rebalanced without): the group's own fence against a zombie. kafkajs resolves
   * once the coordinator answered; librdkafka's package once the commit is queued (commitAsync),
   * and its outcome never reaches the caller.
   */
  commitOffsets(offsets: { topic: string; partition: number; offset: string }[]): Promise<void>;
}

export interface ClientAdmin {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  /**
   * The group's committed offsets of the topic's partitions ('-1': none). An offset committed
   * inside a transaction is visible only once that transaction commits. Stable by default: while
   * a partition's transaction is open the broker answers UNSTABLE_OFFSET_COMMIT, and the read is
   * retried until it ends, which claiming a partition under exactly-once needs. `stable: false`
   * answers at once with the offsets as of the last committed transaction: enough for a lag gauge.
   * (kafkajs never asks for stable offsets and ignores the option.)
   */
  fetchOffsets(
    groupId: string,
    topic: string,
    options?: { stable?: boolean },
  ): Promise<{ partition: number; offset: string }[]>;
  /** Each partition's low and high watermarks. */
  fetchTopicOffsets(topic: string): Promise<{ partition: number; low: string; high: string }[]>;
}

/**
 * The client KAFKA_CLIENT names: kafkajs, or librdkafka (which throws a clear error when
 * scripts/rdkafka.sh has not installed it).
 */
export function createClient(options: KafkaClientOptions, log: Logger, hooks: KafkaClientHooks = {}): KafkaClient {
  return options.client === 'librdkafka' ? createRdkafkaClient(options, log, hooks) : kafkajsClient(createKafkaClient(options, log, hooks));
}

/** libs/kafka's client port over a kafkajs client. */
export function kafkajsClient(kafka: Kafka): KafkaClient {
  return {
    kind: 'kafkajs',
    producer(settings, hooks = {}) {
      const producer = kafka.producer({
        allowAutoTopicCreation: false,
        idempotent: settings.idempotent,
        maxInFlightRequests: settings.maxInFlightRequests,
        // A transaction begun while the broker still completes the previous one is refused
        // (CONCURRENT_TRANSACTIONS) and retried after initialRetryTime: at the client's 300 ms that
        // wait was a step in the exactly-once latency tail (libs/kafka/bench/transaction-retry.cjs:
        // p90 322 ms, 32 ms at 20). Four more doublings keep the budget for a broker failover
        // (about two minutes in all) as long as before.
        retry: settings.transactional
          ? { retries: settings.retries + 4, initialRetryTime: 20 }
          : { retries: settings.retries },
        createPartitioner: Partitioners.DefaultPartitioner,
        ...(settings.transactional
          ? { transactionalId: settings.transactional.id, transactionTimeout: settings.transactional.timeoutMs }
          : {}),
      });
      if (hooks.onConnection) {
        const report = hooks.onConnection;
        producer.on(producer.events.CONNECT, () => report(true));
        producer.on(producer.events.DISCONNECT, () => report(false));
      }
      return {
        connect: () => producer.connect(),
        disconnect: () => producer.disconnect(),
        sendBatch: (batch) => producer.sendBatch({ acks: -1, ...batch }),
        transaction: async () => {
          const transaction = await producer.transaction();
          return {
            sendBatch: (batch) => transaction.sendBatch({ acks: -1, ...batch }),
            sendOffsets: (offsets) => transaction.sendOffsets(offsets),
            commit: () => transaction.commit(),
            abort: () => transaction.abort(),
            isActive: () => transaction.isActive(),
          };
        },
      };
    },
    consumer(settings, hooks = {}) {
      const consumer = kafka.consumer({
        groupId: settings.groupId,
        sessionTimeout: settings.sessionTimeoutMs,
        heartbeatInterval: settings.heartbeatIntervalMs,
        ...(settings.maxBytesPerPartition !== undefined ? { maxBytesPerPartition: settings.maxBytesPerPartition } : {}),
        ...(settings.maxWaitTimeMs !== undefined ? { maxWaitTimeInMs: settings.maxWaitTimeMs } : {}),
        allowAutoTopicCreation: false,
        // read_committed: records of aborted transactions are never delivered, and nothing past a
        // partition's last stable offset (kafkajs's default, stated here because it is the contract).
        readUncommitted: false,
        ...(settings.restartOnFailure ? { retry: { retries: 8, restartOnFailure: async () => true } } : {}),
      });
      const { GROUP_JOIN, REBALANCING, CRASH, DISCONNECT, END_BATCH_PROCESS } = consumer.events;
      if (hooks.onAssigned) {
        const report = hooks.onAssigned;
        consumer.on(GROUP_JOIN, (e) => report(e.payload.memberAssignment));
      }
      if (hooks.onRebalancing) consumer.on(REBALANCING, hooks.onRebalancing);
      if (hooks.onCrash) {
        const report = hooks.onCrash;
        consumer.on(CRASH, (e) => report(e.payload.error, e.payload.restart));
      }
      if (hooks.onDisconnect) consumer.on(DISCONNECT, hooks.onDisconnect);
      if (hooks.onBatchEnd) {
        const report = hooks.onBatchEnd;
        consumer.on(END_BATCH_PROCESS, (e) => {
          const { topic, partition, batchSize, firstOffset, lastOffset } = e.payload;
          report({ topic, partition, batchSize, firstOffset: firstOffset === null ? null : String(firstOffset), lastOffset });
        });
      }
      return {
        connect: () => consumer.connect(),
        disconnect: () => consumer.disconnect(),
        subscribe: (topic) => consumer.subscribe({ topics: [topic], fromBeginning: settings.fromBeginning }),
        run: (run) =>
          consumer.run({
            autoCommit: settings.autoCommit,
            ...(settings.autoCommitIntervalMs !== undefined ? { autoCommitInterval: settings.autoCommitIntervalMs } : {}),
            partitionsConsumedConcurrently: run.partitionsConsumedConcurrently,
            ...(run.eachBatchAutoResolve !== undefined ? { eachBatchAutoResolve: run.eachBatchAutoResolve } : {}),
            ...(run.eachBatch ? { eachBatch: run.eachBatch } : {}),
            ...(run.eachMessage ? { eachMessage: run.eachMessage } : {}),
          }),
        seek: (position) => consumer.seek(position),
        pause: (topic) => consumer.pause([{ topic }]),
        resume: (topic) => consumer.resume([{ topic }]),
        commitOffsets: (offsets) => consumer.commitOffsets(offsets),
      };
    },
    admin() {
      const admin = kafka.admin();
      return {
        connect: () => admin.connect(),
        disconnect: () => admin.disconnect(),
        fetchOffsets: async (groupId, topic) => {
          const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
          return (offsets?.partitions ?? []).map(({ partition, offset }) => ({ partition, offset }));
        },
        fetchTopicOffsets: async (topic) => (await admin.fetchTopicOffsets(topic)).map(({ partition, low, high }) => ({ partition, low, high })),
      };
    },
  };
}
