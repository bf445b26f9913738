import type { Logger } from '@thorax/observability';
import { randomUUID } from 'node:crypto';
import { type Admin, type Consumer, type Kafka, Partitioners, type Producer } from 'kafkajs';
import { createKafkaClient, type KafkaClientOptions } from './kafka-client';
import { decodeHeaders } from './records';

/** One record read back from a topic, decoded headers, raw value. */
export interface TopicRecord {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  /** null for a tombstone. */
  value: Buffer | null;
  headers: Record<string, string>;
  /** Broker or producer timestamp, ms since epoch. */
  timestamp: number;
}

/** Offsets of one partition: `low` is the first record kept, `high` the next to be written. */
export interface PartitionOffsets {
  partition: number;
  low: bigint;
  high: bigint;
}

export interface ReadOptions {
  /**
   * Where each partition starts: its first record, the end as it is now (only what is written
   * from here on), or explicit offsets (a partition missing from the map starts at the end).
   */
  from: 'earliest' | 'latest' | ReadonlyMap<number, bigint>;
  /** `end`: stop once every partition reached its end as it was when reading began; `never`: follow. */
  until: 'end' | 'never';
  /** Called once every partition reached the end it had when reading began (also when following). */
  onCaughtUp?: () => void;
  /** Prefix of the throw-away consumer group (it commits nothing and is deleted afterwards). */
  groupPrefix?: string;
  /** Largest fetch per partition, bytes (default 1 MiB; raise for topics of large records). */
  maxBytesPerPartition?: number;
}

/** A read in progress: `done` settles when it stops (caught up with `until: 'end'`, or stopped). */
export interface TopicReading {
  done: Promise<void>;
  stop(): Promise<void>;
}

/** Committed offset and lag of one partition for one consumer group. */
export interface PartitionLag {
  group: string;
  topic: string;
  partition: number;
  /** null: the group has not committed on this partition. */
  committed: bigint | null;
  high: bigint;
  /** high minus committed (or minus low when nothing is committed). */
  lag: bigint;
}

export interface ProducedRecord {
  topic: string;
  key: string | null;
  value: Buffer | null;
  headers?: Record<string, string>;
  partition?: number;
}

/** Where a produced record landed. */
export interface ProducedPosition {
  topic: string;
  partition: number;
  offset: string;
}

/** A sequence of sends and their commit, all or nothing (a Kafka transaction). */
export interface TopicTransaction {
  send(records: ProducedRecord[]): Promise<void>;
}

/**
 * Operator access to topics for tools (the `thorax` CLI) and control-plane readers: send records,
 * read a topic from given offsets to its current end or follow it, and offsets and consumer-group
 * lag through the admin API. Reads use a throw-away consumer group that never commits, so they do
 * not disturb the services' groups. Only this library touches the Kafka client.
 */
export class TopicTools {
  private admin: Admin | null = null;
  private producer: Producer | null = null;
  private transactional: Producer | null = null;
  private readonly consumers = new Set<Consumer>();

  constructor(
    private readonly kafka: Kafka,
    private readonly log: Logger,
  ) {}

  static connect(options: KafkaClientOptions, log: Logger): TopicTools {
    return new TopicTools(createKafkaClient(options, log), log);
  }

  private async adminClient(): Promise<Admin> {
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    return this.admin;
  }

  async topicExists(topic: string): Promise<boolean> {
    return (await (await this.adminClient()).listTopics()).includes(topic);
  }

  async offsets(topic: string): Promise<PartitionOffsets[]> {
    const rows = await (await this.adminClient()).fetchTopicOffsets(topic);
    return rows
      .map((r) => ({ partition: r.partition, low: BigInt(r.low), high: BigInt(r.high) }))
      .sort((a, b) => a.partition - b.partition);
  }

  /**
   * Lag of every consumer group that has committed offsets (optionally only groups whose id
   * starts with `groupPrefix`), per topic and partition.
   */
  async consumerLag(groupPrefix = ''): Promise<PartitionLag[]> {
    const admin = await this.adminClient();
    const { groups } = await admin.listGroups();
    const ids = groups.map((g) => g.groupId).filter((id) => id.startsWith(groupPrefix)).sort();
    const ends = new Map<string, PartitionOffsets[]>();
    const out: PartitionLag[] = [];
    for (const group of ids) {
      const topics = await admin.fetchOffsets({ groupId: group });
      for (const { topic, partitions } of topics) {
        if (!partitions.some((p) => p.offset !== '-1')) continue;
        if (!ends.has(topic)) ends.set(topic, await this.offsets(topic).catch(() => []));
        const committedAt = new Map(partitions.map((p) => [p.partition, p.offset === '-1' ? null : BigInt(p.offset)]));
        // Every partition of the topic: one the group never committed on lags by all it holds.
        for (const o of ends.get(topic) ?? []) {
          const committed = committedAt.get(o.partition) ?? null;
          const from = committed ?? o.low;
          out.push({ group, topic, partition: o.partition, committed, high: o.high, lag: o.high > from ? o.high - from : 0n });
        }
      }
    }
    return out.sort((a, b) => a.group.localeCompare(b.group) || a.topic.localeCompare(b.topic) || a.partition - b.partition);
  }

  /** Sends records (idempotent producer, acknowledged by all in-sync replicas); resolves with their positions. */
  async send(records: ProducedRecord[]): Promise<ProducedPosition[]> {
    if (!this.producer) {
      const producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
      await producer.connect();
      this.producer = producer;
    }
    const out: ProducedPosition[] = [];
    for (const r of records) {
      const [meta] = await this.producer.send({
        topic: r.topic,
        acks: -1,
        messages: [{ key: r.key, value: r.value, headers: r.headers ?? {}, ...(r.partition !== undefined ? { partition: r.partition } : {}) }],
      });
      out.push({ topic: r.topic, partition: meta?.partition ?? -1, offset: meta?.baseOffset ?? meta?.offset ?? '-1' });
    }
    return out;
  }

  /**
   * Connects a transactional producer under `transactionalId`. Connecting fences any other
   * producer with the same id (its open transaction is aborted), so a reader that starts after
   * this resolves sees everything the previous holder committed, and nothing it did not.
   */
  async beginTransactions(transactionalId: string): Promise<void> {
    if (this.transactional) return;
    const producer = this.kafka.producer({
      transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    // kafkajs registers the transactional id (InitProducerId, which fences the older holder)
    // only when the first transaction begins: begin and abort an empty one now.
    const warmUp = await producer.transaction();
    await warmUp.abort();
    this.transactional = producer;
  }

  /** Runs `work` in one transaction: committed when it resolves, aborted when it throws. */
  async inTransaction<T>(work: (tx: TopicTransaction) => Promise<T>): Promise<T> {
    if (!this.transactional) throw new Error('beginTransactions first');
    const tx = await this.transactional.transaction();
    try {
      const result = await work({
        send: async (records) => {
          for (const r of records) {
            await tx.send({
              topic: r.topic,
              acks: -1,
              messages: [{ key: r.key, value: r.value, headers: r.headers ?? {}, ...(r.partition !== undefined ? { partition: r.partition } : {}) }],
            });
          }
        },
      });
      await tx.commit();
      return result;
    } catch (error) {
      await tx.abort().catch((abortError: unknown) => this.log.warn({ err: abortError }, 'transaction abort failed'));
      throw error;
    }
  }

  /**
   * Reads a topic (committed records only) and hands each record to `onRecord`, partitions
   * concurrently, each in offset order. With `until: 'end'` it stops at the end every partition
   * had when reading began; records written later are not read.
   */
  async read(topic: string, options: ReadOptions, onRecord: (record: TopicRecord) => Promise<void> | void): Promise<TopicReading> {
    const ends = await this.offsets(topic);
    if (ends.length === 0) throw new Error(`topic ${topic} does not exist`);
    const starts = new Map<number, bigint>();
    for (const o of ends) {
      const from = options.from;
      const start = from === 'earliest' ? o.low : from === 'latest' ? o.high : (from.get(o.partition) ?? o.high);
      starts.set(o.partition, start < o.low ? o.low : start > o.high ? o.high : start);
    }
    // Partitions still short of the end they had at the start.
    const behind = new Set(ends.filter((o) => (starts.get(o.partition) ?? 0n) < o.high).map((o) => o.partition));
    const endOf = new Map(ends.map((o) => [o.partition, o.high]));
    const next = new Map(starts);
    const groupId = `${options.groupPrefix ?? 'thorax-reader'}-${randomUUID()}`;
    const consumer = this.kafka.consumer({
      groupId,
      allowAutoTopicCreation: false,
      maxBytesPerPartition: options.maxBytesPerPartition ?? 1_048_576,
      maxWaitTimeInMs: 250,
      readUncommitted: false,
    });
    this.consumers.add(consumer);
    let resolveDone!: () => void;
    let rejectDone!: (error: unknown) => void;
    const done = new Promise<void>((resolve, reject) => {
      resolveDone = resolve;
      rejectDone = reject;
    });
    let stopped = false;
    const stop = async (): Promise<void> => {
      if (stopped) return done.catch(() => undefined);
      stopped = true;
      this.consumers.delete(consumer);
      await consumer.disconnect().catch(() => undefined);
      await this.adminClient()
        .then((admin) => admin.deleteGroups([groupId]))
        .catch(() => undefined);
      resolveDone();
      return done.catch(() => undefined);
    };
    let caughtUp = false;
    const checkCaughtUp = (): void => {
      if (caughtUp || behind.size > 0) return;
      caughtUp = true;
      options.onCaughtUp?.();
      if (options.until === 'end') void stop();
    };
    consumer.on(consumer.events.CRASH, (event) => {
      const payload = event.payload as { error?: Error; restart?: boolean };
      // kafkajs restarts the consumer itself after a retriable failure (a broker restart).
      if (stopped || payload.restart === true) return;
      const error = payload.error ?? new Error('consumer crashed');
      stopped = true;
      this.consumers.delete(consumer);
      void consumer.disconnect().catch(() => undefined);
      rejectDone(error);
    });
    // Transaction markers and compacted-away records leave gaps: a partition whose last records
    // are not data never hands its end offset to eachMessage, so batch ends (control-only batches
    // included) move a partition's position too.
    consumer.on(consumer.events.END_BATCH_PROCESS, (event) => {
      const p = event.payload as { topic: string; partition: number; lastOffset: string };
      if (p.topic !== topic || !behind.has(p.partition)) return;
      if (BigInt(p.lastOffset) + 1n >= (endOf.get(p.partition) ?? 0n) && behind.delete(p.partition)) checkCaughtUp();
    });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    checkCaughtUp();
    if (stopped) return { done, stop };
    await consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: Math.max(1, ends.length),
      eachMessage: async ({ partition, message }) => {
        if (stopped) return;
        const offset = BigInt(message.offset);
        // After kafkajs restarts a crashed consumer, the throw-away group has no committed
        // position and reads from the beginning again: what was handed over already is skipped.
        if (offset < (next.get(partition) ?? 0n)) return;
        next.set(partition, offset + 1n);
        const end = endOf.get(partition) ?? 0n;
        if (options.until === 'end' && offset >= end) {
          behind.delete(partition);
          checkCaughtUp();
          return;
        }
        await onRecord({
          topic,
          partition,
          offset: message.offset,
          key: message.key ? message.key.toString('utf8') : null,
          value: message.value,
          headers: decodeHeaders(message.headers),
          timestamp: Number(message.timestamp),
        });
        if (offset + 1n >= end && behind.delete(partition)) checkCaughtUp();
      },
    });
    for (const [partition, offset] of starts) consumer.seek({ topic, partition, offset: offset.toString() });
    return { done, stop };
  }

  async disconnect(): Promise<void> {
    await Promise.all([...this.consumers].map((c) => c.disconnect().catch(() => undefined)));
    this.consumers.clear();
    await Promise.all(
      [this.producer, this.transactional, this.admin].map((c) => (c ? c.disconnect().catch(() => undefined) : undefined)),
    );
    this.producer = this.transactional = this.admin = null;
  }
}
