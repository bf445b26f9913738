import { existsSync } from 'node:fs';
import path from 'node:path';

/** The package scripts/rdkafka.sh builds (librdkafka compiled against the system's libraries). */
export const CONFLUENT_PACKAGE = '@confluentinc/kafka-javascript';

/** The KafkaJS-compatible part of @confluentinc/kafka-javascript that libs/kafka uses. */
export interface ConfluentKafkaJS {
  Kafka: new (config: Record<string, unknown>) => ConfluentKafka;
  KafkaJSError: new (...args: never[]) => Error;
}

export interface ConfluentKafka {
  producer(config: Record<string, unknown>): ConfluentProducer;
  consumer(config: Record<string, unknown>): ConfluentConsumer;
  admin(config?: Record<string, unknown>): ConfluentAdmin;
}

export interface ConfluentProducer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  sendBatch(batch: { topicMessages: unknown[] }): Promise<unknown>;
  transaction(): Promise<ConfluentProducer>;
  sendOffsets(args: { consumer: ConfluentConsumer; topics: unknown[] }): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
  isActive(): boolean;
}

export interface ConfluentConsumer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  subscribe(args: { topics: string[] }): Promise<void>;
  run(config: Record<string, unknown>): Promise<void>;
  seek(position: { topic: string; partition: number; offset: string }): void;
  pause(topics: { topic: string; partitions?: number[] }[]): void;
  resume(topics: { topic: string; partitions?: number[] }[]): void;
  /** Queues a commit of the given offsets (librdkafka's commitAsync, with the group's generation and member id). */
  commitOffsets(offsets: { topic: string; partition: number; offset: string }[]): Promise<void>;
  /** Committed offsets through the consumer's group handle; a failed partition's slot holds an error. */
  committed(
    partitions: { topic: string; partition: number }[],
    timeoutMs: number,
  ): Promise<{ topic?: string; partition?: number; offset?: string | null }[]>;
}

export interface ConfluentAdmin {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  fetchOffsets(args: { groupId: string; topics: string[]; requireStableOffsets?: boolean }): Promise<
    { topic: string; partitions: { partition: number; offset: string }[] }[]
  >;
  fetchTopicOffsets(topic: string): Promise<{ partition: number; low: string; high: string }[]>;
  fetchTopicMetadata(args: { topics: string[]; timeout?: number }): Promise<{ name: string; partitions: { partitionId: number }[] }[]>;
}

/** The package's librdkafka-style consumer (its `RdKafka` API), for what the KafkaJS API lacks (assign). */
export interface ConfluentRdKafka {
  KafkaConsumer: new (config: Record<string, unknown>, topicConfig: Record<string, unknown>) => RdKafkaConsumer;
}

/** The part of the package's librdkafka-style consumer that the partition-end probe uses. */
export interface RdKafkaConsumer {
  connect(metadata: Record<string, unknown>, cb: (error: Error | null) => void): void;
  disconnect(cb: (error: Error | null) => void): void;
  isConnected(): boolean;
  assign(assignments: { topic: string; partition: number; offset: number }[]): void;
  unassign(): void;
  setDefaultConsumeTimeout(timeoutMs: number): void;
  consume(count: number, cb: (error: Error | null, messages: { topic: string; partition: number; offset: number }[]) => void): void;
  queryWatermarkOffsets(
    topic: string,
    partition: number,
    timeoutMs: number,
    cb: (error: Error | null, offsets: { lowOffset: number; highOffset: number }) => void,
  ): void;
  on(event: 'partition.eof', listener: (eof: { topic: string; partition: number; offset: number }) => void): void;
  on(event: 'event.error', listener: (error: Error) => void): void;
}

export class LibrdkafkaMissingError extends Error {
  constructor(tried: string[], cause: unknown) {
    super(
      `KAFKA_CLIENT=librdkafka, but ${CONFLUENT_PACKAGE} is not installed or does not load (tried ${tried.join(', ')}): ` +
        'run `bash scripts/rdkafka.sh` (builds it into .cache/confluent-kafka), set KAFKA_LIBRDKAFKA_DIR to where it was installed, ' +
        'or set KAFKA_CLIENT=kafkajs (librdkafka is the default client)',
      { cause },
    );
    this.name = 'LibrdkafkaMissingError';
  }
}

let loaded: { dir: string | null; module: ConfluentKafkaJS; rdkafka: ConfluentRdKafka } | null = null;

/**
 * The folders tried for the package, in order: `dir` (KAFKA_LIBRDKAFKA_DIR) alone when given,
 * else Node's own resolution and then .cache/confluent-kafka in this checkout or any folder
 * above the running code (the source tree under Jest, dist/ when built).
 */
export function confluentCandidates(dir: string | undefined, from: string = __dirname): (string | null)[] {
  if (dir) return [path.resolve(dir)];
  const candidates: (string | null)[] = [null];
  for (let current = from; ; current = path.dirname(current)) {
    const cache = path.join(current, '.cache', 'confluent-kafka');
    if (existsSync(cache)) candidates.push(cache);
    if (path.dirname(current) === current) break;
  }
  return candidates;
}

/**
 * Loads @confluentinc/kafka-javascript once per process, from KAFKA_LIBRDKAFKA_DIR or the
 * default places (confluentCandidates); throws LibrdkafkaMissingError naming what was tried.
 */
export function loadConfluent(dir?: string): ConfluentKafkaJS {
  if (loaded && (dir === undefined || loaded.dir === path.resolve(dir))) return loaded.module;
  const tried: string[] = [];
  let lastError: unknown = null;
  for (const candidate of confluentCandidates(dir)) {
    const request = candidate === null ? CONFLUENT_PACKAGE : path.join(candidate, 'node_modules', CONFLUENT_PACKAGE);
    tried.push(candidate === null ? CONFLUENT_PACKAGE : request);
    try {
      // The package is optional and outside node_modules: required by path at run time.
      const root = require(request) as {
        KafkaJS?: ConfluentKafkaJS;
        KafkaConsumer?: ConfluentRdKafka['KafkaConsumer'];
        Producer?: { prototype: object };
      };
      const module = root.KafkaJS;
      if (!module?.Kafka) throw new Error(`${request} has no KafkaJS.Kafka`);
      if (!root.KafkaConsumer) throw new Error(`${request} has no KafkaConsumer`);
      if (!root.Producer) throw new Error(`${request} has no Producer`);
      boundConnectWait(Object.getPrototypeOf(root.Producer.prototype) as ConnectingClient);
      loaded = { dir: candidate, module, rdkafka: { KafkaConsumer: root.KafkaConsumer } };
      return module;
    } catch (error) {
      lastError = error;
    }
  }
  throw new LibrdkafkaMissingError(tried, lastError);
}

/**
 * How long a connect of the package's clients waits for the cluster's metadata, the step that
 * tells it a broker answers (the package's own default is 30 s).
 */
export const CONNECT_METADATA_TIMEOUT_MS = 5_000;

/** The librdkafka-style client class every producer and consumer of the package derives from. */
export interface ConnectingClient {
  connect(metadata: Record<string, unknown> | null | undefined, cb?: (...args: unknown[]) => void): unknown;
  [BOUNDED]?: true;
}
const BOUNDED = Symbol('thorax.boundedConnectWait');

/**
 * Bounds that wait for the KafkaJS-compatible clients too, which connect with the package's
 * default and offer no setting for it. The wait blocks one of libuv's threads in librdkafka, and
 * Node's exit joins those threads: a connect that no broker answers (a refused TLS handshake, no
 * broker up) held a stopped service's exit for up to 30 s, past its orchestrator's grace period.
 * A connect that times out fails as one that is refused does, and is retried the same way.
 */
export function boundConnectWait(client: ConnectingClient): void {
  if (client[BOUNDED]) return;
  const connect = client.connect;
  client.connect = function (this: ConnectingClient, metadata, cb) {
    return connect.call(this, metadata ?? { timeout: CONNECT_METADATA_TIMEOUT_MS }, cb);
  };
  client[BOUNDED] = true;
}

/** The package's librdkafka-style API, loaded as loadConfluent loads the package. */
export function loadConfluentRdKafka(dir?: string): ConfluentRdKafka {
  loadConfluent(dir);
  return (loaded as { rdkafka: ConfluentRdKafka }).rdkafka;
}

/** The package if this process loaded it, else null (never loads it). */
export function loadedConfluent(): ConfluentKafkaJS | null {
  return loaded?.module ?? null;
}

/** Whether the package can be loaded (tests skip the librdkafka runs without it). */
export function confluentAvailable(dir?: string): boolean {
  try {
    loadConfluent(dir);
    return true;
  } catch {
    return false;
  }
}
