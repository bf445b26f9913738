import type { Logger } from '@thorax/observability';
import type {
  ClientAdmin,
  ClientConsumer,
  ClientProducer,
  ClientTransaction,
  ConsumerHooks,
  ConsumerSettings,
  KafkaClient,
  ProducerHooks,
  ProducerSettings,
  TopicMessages,
} from '../client-port';
import { refusedRecordType } from '../failure-policy';
import { type KafkaClientHooks, type KafkaClientOptions, RepeatFilter } from '../kafka-client';
import { CommittedOffsets } from './committed-offsets';
import { type ConfluentConsumer, type ConfluentProducer, loadConfluent, loadConfluentRdKafka } from './confluent-module';
import { type PartitionEndProbe, type PartitionEndProbes, RdkafkaPartitionEndProbe } from './partition-end-probe';
import { rdkafkaConnectionProperties, rdkafkaConsumerProperties, rdkafkaProducerProperties } from './rdkafka-config';

/** librdkafka's rebalance event codes (RdKafka.CODES.ERRORS). */
const ERR__ASSIGN_PARTITIONS = -175;
const ERR__REVOKE_PARTITIONS = -174;
const REPEAT_WINDOW_MS = 60_000;
/** KafkaJS-compatible log levels of the package. */
const LOG_WARN = 2;
/** How long a read of committed offsets waits for the group coordinator, and for metadata. */
const OFFSETS_TIMEOUT_MS = 10_000;
/** How long a partition-end probe reads before it gives up (RdkafkaPartitionEndProbe). */
const PROBE_TIMEOUT_MS = 5_000;
/**
 * Longest a disconnect waits for the connect in flight (ConnectGate.close); past it the client is
 * closed in the background once that connect ends. A healthy broker answers a connect in well
 * under a second; one that cannot (refused TLS, no broker up) holds it for the whole metadata
 * wait (CONNECT_METADATA_TIMEOUT_MS).
 */
const CONNECT_SETTLE_BOUND_MS = 2_000;
/**
 * The admin handle keeps a connection to every broker instead of connecting on demand. On demand
 * (librdkafka's sparse connections), a request waiting for a dead broker (the lag poll's
 * ListOffsets to a partition leader that was just killed) asks for a connection at each of that
 * broker's state changes, and each ask cancels the reconnect backoff: about 10,000 refused
 * connects a second from each service, until the broker came back, in the three-broker test.
 * Persistent connections reconnect with the backoff (reconnect.backoff.ms to .max.ms).
 */
const ADMIN_PROPERTIES = { 'enable.sparse.connections': false } as const;

/**
 * libs/kafka's client port over librdkafka (@confluentinc/kafka-javascript, its KafkaJS-compatible
 * API, configured with librdkafka's own properties: rdkafka-config.ts).
 *
 * - Producers: idempotent (librdkafka's: exact retries with up to 5 requests in flight, no fresh
 *   producer needed after a failed send), acks=all, batching and delivery in librdkafka's threads.
 * - Transactions: `sendOffsets` goes with the consumer's group metadata (KIP-447: the broker fences
 *   a zombie by group generation as well as by transactional id); errors carry librdkafka's
 *   `fatal` and `abortable` flags (a fatal one: the producer is replaced, see RecordConsumer).
 * - Consumers: read_committed, offsets stored only when resolved, group events from the
 *   rebalance callback (no kafkajs event emitter in this package).
 * - Admin: committed offsets are read by a consumer of the group that never joins it, not by
 *   librdkafka's Admin API, whose coordinator requests abort the process after a broker loss
 *   (CommittedOffsets).
 * - Partition-end probes: a read_committed consumer of the group that never joins it, assigned at
 *   an idle partition's committed offset, says whether only markers or aborted records follow
 *   (RdkafkaPartitionEndProbe; RecordConsumer then commits past them).
 * - Logs: librdkafka's lines go to the service's logger, warnings and errors only, each line at
 *   most once a minute; an error line naming a TLS failure reaches `hooks.onSocketError` at once.
 */
export function createRdkafkaClient(
  options: KafkaClientOptions,
  log: Logger,
  hooks: KafkaClientHooks = {},
): KafkaClient & PartitionEndProbes {
  const module = loadConfluent(options.librdkafkaDir);
  /** The last authentication or TLS failure librdkafka logged (its connect errors are generic). */
  const specific: { error: Error | null; at: number } = { error: null, at: 0 };
  const logger = clientLogger(log.child({ component: 'librdkafka' }), hooks, (error) => {
    specific.error = error;
    specific.at = Date.now();
  });
  /** A failed connect, named by the authentication or TLS failure seen meanwhile if any. */
  const connectFailure = (error: unknown, since: number): unknown =>
    specific.error && specific.at >= since ? Object.assign(new Error(specific.error.message), { cause: error }) : error;
  const kafka = new module.Kafka({ kafkaJS: { logger, logLevel: LOG_WARN }, ...rdkafkaConnectionProperties(options) });
  /** A client closed in the background after its connect ended (ConnectGate.close). */
  const lateClose = (error: unknown) => log.warn({ err: error }, 'kafka: closing a client after its connect ended failed');
  /** The group consumers this client made, for sendOffsets (KIP-447 group metadata). */
  const consumers = new Map<string, ConfluentConsumer>();

  const transaction = (producer: ConfluentProducer): ClientTransaction => ({
    sendBatch: (batch) => producer.sendBatch(batch),
    sendOffsets: async ({ consumerGroupId, topics }) => {
      const consumer = consumers.get(consumerGroupId);
      if (!consumer) throw new Error(`no consumer of group ${consumerGroupId} in this client for sendOffsets`);
      await producer.sendOffsets({ consumer, topics });
    },
    commit: () => producer.commit(),
    abort: () => producer.abort(),
    isActive: () => producer.isActive(),
  });

  return {
    kind: 'librdkafka',
    // A consumer of the group that never joins it, for exactly-once consumers' idle partitions.
    partitionEndProbe(groupId: string): PartitionEndProbe {
      const { KafkaConsumer } = loadConfluentRdKafka(options.librdkafkaDir);
      return new RdkafkaPartitionEndProbe(
        (config) => new KafkaConsumer({ ...rdkafkaConnectionProperties(options), 'group.id': groupId, ...config }, {}),
        PROBE_TIMEOUT_MS,
      );
    },
    producer(settings: ProducerSettings, producerHooks: ProducerHooks = {}): ClientProducer {
      // The package connects a producer once: after a failed connect the next try gets a new one.
      let producer = kafka.producer(rdkafkaProducerProperties(settings));
      const isolation = new RefusalIsolation(() => producer);
      const gate = new ConnectGate();
      let connected = false;
      return {
        connect: () =>
          gate.connect(async () => {
            if (connected) return;
            const since = Date.now();
            try {
              await producer.connect();
              connected = true;
            } catch (error) {
              const failed = producer;
              producer = kafka.producer(rdkafkaProducerProperties(settings));
              await failed.disconnect().catch(() => undefined);
              throw connectFailure(error, since);
            }
            producerHooks.onConnection?.(true);
          }),
        disconnect: async () => {
          producerHooks.onConnection?.(false);
          connected = false;
          await gate.close(() => producer.disconnect(), lateClose);
        },
        sendBatch: (batch) => isolation.send(batch),
        batchesItself: true,
        transaction: async () => transaction(await producer.transaction()),
      };
    },
    consumer(settings: ConsumerSettings, consumerHooks: ConsumerHooks = {}): ClientConsumer {
      const rebalance = (error: { code?: number } | null, assignment: { topic: string; partition: number }[]) => {
        if (error?.code === ERR__ASSIGN_PARTITIONS) {
          const byTopic: Record<string, number[]> = {};
          for (const { topic, partition } of assignment) (byTopic[topic] ??= []).push(partition);
          consumerHooks.onAssigned?.(byTopic);
        } else if (error?.code === ERR__REVOKE_PARTITIONS) {
          consumerHooks.onRebalancing?.();
        }
      };
      const make = () => kafka.consumer({ ...rdkafkaConsumerProperties(settings), rebalance_cb: rebalance });
      let consumer = make();
      consumers.set(settings.groupId, consumer);
      let subscribed: string | null = null;
      const gate = new ConnectGate();
      let connected = false;
      return {
        connect: () =>
          gate.connect(async () => {
            if (connected) return;
            const since = Date.now();
            try {
              await consumer.connect();
              connected = true;
            } catch (error) {
              // Connected once per instance (as producers): the next try gets a new one.
              const failed = consumer;
              consumer = make();
              consumers.set(settings.groupId, consumer);
              await failed.disconnect().catch(() => undefined);
              throw connectFailure(error, since);
            }
          }),
        disconnect: async () => {
          connected = false;
          try {
            await gate.close(() => consumer.disconnect(), lateClose);
          } finally {
            if (consumers.get(settings.groupId) === consumer) consumers.delete(settings.groupId);
            consumerHooks.onDisconnect?.();
          }
        },
        subscribe: async (topic) => {
          subscribed = topic;
          await consumer.subscribe({ topics: [topic] });
        },
        run: (run) =>
          consumer.run({
            partitionsConsumedConcurrently: run.partitionsConsumedConcurrently,
            ...(run.eachBatchAutoResolve !== undefined ? { eachBatchAutoResolve: run.eachBatchAutoResolve } : {}),
            ...(run.eachBatch ? { eachBatch: run.eachBatch } : {}),
            ...(run.eachMessage ? { eachMessage: run.eachMessage } : {}),
          }),
        seek: (position) => consumer.seek(position),
        // The package refuses pause/resume before the group has assigned partitions: nothing is
        // fetched then anyway.
        pause: (topic) => ignoreUnassigned(() => consumer.pause([{ topic }]), subscribed),
        resume: (topic) => ignoreUnassigned(() => consumer.resume([{ topic }]), subscribed),
        commitOffsets: (offsets) => consumer.commitOffsets(offsets),
      };
    },
    admin(): ClientAdmin {
      let admin = kafka.admin(ADMIN_PROPERTIES);
      let connected = false;
      let offsets: CommittedOffsets | null = null;
      const committedOffsets = () =>
        (offsets ??= new CommittedOffsets({
          reader: (groupId, stable) =>
            kafka.consumer({
              'group.id': groupId,
              // librdkafka asks for stable offsets when, and only when, the consumer is read_committed.
              'isolation.level': stable ? 'read_committed' : 'read_uncommitted',
              'enable.auto.commit': false,
              'allow.auto.create.topics': false,
            }),
          partitions: async (topic) => {
            const [metadata] = await admin.fetchTopicMetadata({ topics: [topic], timeout: OFFSETS_TIMEOUT_MS });
            return (metadata?.partitions ?? []).map(({ partitionId }) => partitionId).sort((a, b) => a - b);
          },
          timeoutMs: OFFSETS_TIMEOUT_MS,
        }));
      const gate = new ConnectGate();
      return {
        connect: () =>
          gate.connect(async () => {
            if (connected) return;
            const since = Date.now();
            try {
              await admin.connect();
              connected = true;
            } catch (error) {
              const failed = admin;
              admin = kafka.admin(ADMIN_PROPERTIES);
              await failed.disconnect().catch(() => undefined);
              throw connectFailure(error, since);
            }
          }),
        disconnect: async () => {
          connected = false;
          const closing = offsets;
          offsets = null;
          await closing?.close();
          await gate.close(() => admin.disconnect(), lateClose);
        },
        // Stable unless asked otherwise: a transaction's offset commit counts only once it commits.
        fetchOffsets: (groupId, topic, options) => committedOffsets().fetch(groupId, topic, options?.stable ?? true),
        fetchTopicOffsets: async (topic) =>
          (await admin.fetchTopicOffsets(topic)).map(({ partition, low, high }) => ({ partition, low: String(low), high: String(high) })),
      };
    },
  };
}

type Batch = { topicMessages: TopicMessages[] };

/**
 * Orders connect and disconnect of one of the package's clients. Its producer, disconnected while
 * it still connects, throws from its ready callback ("Ready callback called in invalid state")
 * and its connect() never settles: a rebalance that revoked a partition whose transactional
 * producer was starting left that partition's work, and so the service's shutdown, waiting for
 * ever. And a connect the broker cannot answer (a refused TLS handshake, no broker up) holds the
 * package's disconnect for the whole of its metadata wait (30 s by the package's default: a
 * librdkafka ingest was SIGKILLed when stopped so). So a close never reaches the package
 * while a connect is in flight: it waits a little for that connect, then leaves the close to run
 * once the connect ends; and a second connect while one is in flight joins it instead of calling
 * the package twice.
 */
export class ConnectGate {
  private inFlight: Promise<void> | null = null;

  connect(attempt: () => Promise<void>): Promise<void> {
    if (this.inFlight) return this.inFlight;
    const current = attempt().finally(() => {
      if (this.inFlight === current) this.inFlight = null;
    });
    this.inFlight = current;
    return current;
  }

  /**
   * Runs `close` now if no connect is in flight, or once the one in flight ends (either way) if
   * that is within `boundMs`. Otherwise resolves after `boundMs` and runs `close` in the
   * background when that connect ends, reporting its failure to `onLateError`.
   */
  async close(
    close: () => Promise<void>,
    onLateError: (error: unknown) => void,
    boundMs = CONNECT_SETTLE_BOUND_MS,
  ): Promise<void> {
    const inFlight = this.inFlight?.catch(() => undefined);
    if (!inFlight) return close();
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      inFlight.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), boundMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    if (ended) return close();
    void inFlight.then(close).catch(onLateError);
  }
}

/**
 * librdkafka gathers the records of concurrent sends into one record batch per partition, and a
 * broker that refuses a batch (a record above the topic's max.message.bytes) fails every record in
 * it. So a send refused that way is repeated record by record while nothing else is produced (new
 * sends wait; those already in flight finish first): only the record that is really too large
 * fails, each of the others is written once. Used outside transactions (a refused record inside
 * one aborts it: TransactionScope).
 */
class RefusalIsolation {
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Resolved while sends may go; pending while an isolated re-send runs. */
  private gate: Promise<void> = Promise.resolve();

  constructor(private readonly current: () => Pick<ConfluentProducer, 'sendBatch'>) {}

  async send(batch: Batch): Promise<unknown> {
    await this.gate;
    // One promise per record (what the package does inside sendBatch too), so that after a
    // refusal only the records that were not written are sent again.
    const records = batch.topicMessages.flatMap(({ topic, messages }) => messages.map((message) => ({ topic, message })));
    const results = await Promise.allSettled(
      records.map(({ topic, message }) => this.track(this.sendOne(topic, message))),
    );
    const failed = records.filter((_, i) => results[i]?.status === 'rejected');
    if (failed.length === 0) return [];
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    const other = errors.find((e) => refusedRecordType(e) === null);
    if (other !== undefined) throw other;
    return this.isolated(failed);
  }

  /** The package rewrites a message it sends (headers, partition, timestamp): each send gets a copy. */
  private sendOne(topic: string, message: TopicMessages['messages'][number]): Promise<unknown> {
    return this.current().sendBatch({ topicMessages: [{ topic, messages: [{ ...message }] }] });
  }

  private track<R>(sending: Promise<R>): Promise<R> {
    this.inFlight.add(sending);
    const done = () => this.inFlight.delete(sending);
    sending.then(done, done);
    return sending;
  }

  private async isolated(records: { topic: string; message: TopicMessages['messages'][number] }[]): Promise<unknown> {
    const previous = this.gate;
    let open: () => void = () => undefined;
    this.gate = previous.then(() => new Promise<void>((resolve) => (open = resolve)));
    await previous;
    try {
      await Promise.allSettled([...this.inFlight]);
      let refused: unknown = null;
      for (const { topic, message } of records) {
        try {
          await this.track(this.sendOne(topic, message));
        } catch (error) {
          // The first refusal is the call's answer; the rest of its records still go.
          if (refusedRecordType(error) === null) throw error;
          refused ??= error;
        }
      }
      if (refused !== null) throw refused;
      return [];
    } finally {
      open();
    }
  }
}

function ignoreUnassigned(fn: () => void, subscribed: string | null): void {
  if (subscribed === null) return;
  try {
    fn();
  } catch (error) {
    if (!/not (yet )?assigned|no assignment|erroneous state|ERR__STATE/i.test(String((error as Error).message))) throw error;
  }
}

/** The package's logger interface (KafkaJS-compatible). */
interface ClientLogger {
  info(message: string, extra?: object): void;
  warn(message: string, extra?: object): void;
  error(message: string, extra?: object): void;
  debug(message: string, extra?: object): void;
  namespace(): ClientLogger;
  setLogLevel(level: number): void;
}

/** librdkafka's log lines into the service's logger (warn and error, repeats held back). */
function clientLogger(log: Logger, hooks: KafkaClientHooks, onSpecific: (error: Error) => void): ClientLogger {
  const repeats = new RepeatFilter(REPEAT_WINDOW_MS);
  const write = (level: 'warn' | 'error', message: string, extra: object = {}) => {
    const { fac, name } = extra as { fac?: string; name?: string };
    if (level === 'error' && /SSL|TLS|certificate|security\.protocol|authentication/i.test(message)) {
      const error = new Error(message);
      onSpecific(error);
      hooks.onSocketError?.(error, name ?? 'librdkafka');
    }
    const repeated = repeats.admit(`${level}|${message.replace(/\d+ms/g, '')}`);
    if (repeated === null) return;
    log[level]({ fac, client: name, ...(repeated > 0 ? { repeated } : {}) }, message);
  };
  const logger: ClientLogger = {
    info: () => undefined,
    debug: () => undefined,
    warn: (message, extra) => write('warn', message, extra),
    error: (message, extra) => write('error', message, extra),
    namespace: () => logger,
    setLogLevel: () => undefined,
  };
  return logger;
}
