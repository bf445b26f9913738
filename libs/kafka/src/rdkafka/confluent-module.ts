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

export class LibrdkafkaMissingError extends Error {
  constructor(tried: string[], cause: unknown) {
    super(
      `KAFKA_CLIENT=librdkafka, but ${CONFLUENT_PACKAGE} is not installed or does not load (tried ${tried.join(', ')}): ` +
        'run `bash scripts/rdkafka.sh` (builds it into .cache/confluent-kafka) or set KAFKA_LIBRDKAFKA_DIR to where it was installed',
      { cause },
    );
    this.name = 'LibrdkafkaMissingError';
  }
}

let loaded: { dir: string | null; module: ConfluentKafkaJS } | null = null;

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
      const module = (require(request) as { KafkaJS?: ConfluentKafkaJS }).KafkaJS;
      if (!module?.Kafka) throw new Error(`${request} has no KafkaJS.Kafka`);
      loaded = { dir: candidate, module };
      return module;
    } catch (error) {
      lastError = error;
    }
  }
  throw new LibrdkafkaMissingError(tried, lastError);
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
