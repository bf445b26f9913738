import type { RdKafkaConsumer } from './confluent-module';

/**
 * What a read_committed read of a partition from an offset found:
 * - `settled`: from `from` up to `end` (the last stable offset) nothing is delivered to a
 *   read_committed consumer: every offset there is a transaction marker or an aborted record;
 * - `at-end`: `from` is already the last stable offset (or past it);
 * - `records`: a record is delivered there (a group member will process it);
 * - `unknown`: no answer in time, or an error (an offset out of range, a broker failure).
 */
export type ProbeResult =
  | { kind: 'settled'; end: string }
  | { kind: 'at-end' }
  | { kind: 'records'; offset: string }
  | { kind: 'unknown'; reason: string };

/** Reads, without a group membership, whether a partition holds records from an offset on. */
export interface PartitionEndProbe {
  probe(topic: string, partition: number, from: string): Promise<ProbeResult>;
  close(): Promise<void>;
}

/**
 * The offset an exactly-once consumer may commit after a probe from its committed offset
 * `committed`, or null: only past offsets a read_committed consumer never delivers (markers,
 * aborted records), and only forward.
 */
export function offsetPastMarkers(committed: string, result: ProbeResult): string | null {
  if (result.kind !== 'settled') return null;
  return BigInt(result.end) > BigInt(committed) ? result.end : null;
}

/**
 * The partition-end probe over librdkafka: one consumer of the group that never joins it (no
 * subscribe, no commits), read_committed, assigned one partition at a time at the offset asked.
 * The partition's last stable offset comes from a watermark query of that consumer (a ListOffsets
 * request at its isolation level, not the Admin API); librdkafka's fetch position moves past
 * markers and aborted records, and it reports the end of a partition (enable.partition.eof) at
 * the last stable offset for a read_committed consumer, after every record before it. So an end
 * reached with no record delivered proves the range holds none. A start below the partition's
 * first offset is an error (auto.offset.reset=error), never a jump.
 */
export class RdkafkaPartitionEndProbe implements PartitionEndProbe {
  private consumer: Promise<RdKafkaConsumer> | null = null;
  /** One probe at a time (the consumer holds one assignment). */
  private queue: Promise<unknown> = Promise.resolve();
  private eof: { topic: string; partition: number; offset: number } | null = null;
  private closed = false;

  constructor(
    private readonly make: (config: Record<string, unknown>) => RdKafkaConsumer,
    private readonly timeoutMs: number,
  ) {}

  probe(topic: string, partition: number, from: string): Promise<ProbeResult> {
    const run = this.queue.then(() => this.run(topic, partition, from));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
    const connecting = this.consumer;
    this.consumer = null;
    const consumer = await connecting?.catch(() => null);
    if (consumer) await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }

  private async run(topic: string, partition: number, from: string): Promise<ProbeResult> {
    if (this.closed) return { kind: 'unknown', reason: 'closed' };
    let consumer: RdKafkaConsumer;
    try {
      consumer = await this.connected();
    } catch (error) {
      this.consumer = null;
      return { kind: 'unknown', reason: `connect: ${(error as Error).message}` };
    }
    const deadline = Date.now() + this.timeoutMs;
    let high: number;
    try {
      high = await new Promise<number>((resolve, reject) =>
        consumer.queryWatermarkOffsets(topic, partition, this.timeoutMs, (error, offsets) =>
          error ? reject(error) : resolve(offsets.highOffset),
        ),
      );
    } catch (error) {
      return { kind: 'unknown', reason: `watermarks: ${(error as Error).message}` };
    }
    const start = Number(from);
    if (start >= high) return { kind: 'at-end' };
    this.eof = null;
    consumer.assign([{ topic, partition, offset: start }]);
    try {
      while (Date.now() < deadline) {
        const messages = await new Promise<{ topic: string; partition: number; offset: number }[]>((resolve, reject) =>
          consumer.consume(100, (error, batch) => (error ? reject(error) : resolve(batch))),
        );
        const record = messages.find((m) => m.topic === topic && m.partition === partition && m.offset >= start);
        if (record) return { kind: 'records', offset: String(record.offset) };
        const eof = this.eof as { topic: string; partition: number; offset: number } | null;
        if (eof && eof.topic === topic && eof.partition === partition && eof.offset >= start) {
          return eof.offset > start ? { kind: 'settled', end: String(eof.offset) } : { kind: 'at-end' };
        }
      }
      return { kind: 'unknown', reason: `no end of partition within ${this.timeoutMs} ms` };
    } catch (error) {
      return { kind: 'unknown', reason: `read: ${(error as Error).message}` };
    } finally {
      consumer.unassign();
    }
  }

  private connected(): Promise<RdKafkaConsumer> {
    this.consumer ??= new Promise<RdKafkaConsumer>((resolve, reject) => {
      const consumer = this.make({
        'isolation.level': 'read_committed',
        'enable.auto.commit': false,
        'enable.auto.offset.store': false,
        'enable.partition.eof': true,
        'auto.offset.reset': 'error',
        'allow.auto.create.topics': false,
      });
      consumer.on('partition.eof', (eof) => (this.eof = eof));
      consumer.on('event.error', () => undefined);
      consumer.setDefaultConsumeTimeout(200);
      consumer.connect({ timeout: this.timeoutMs }, (error) => (error ? reject(error) : resolve(consumer)));
    });
    return this.consumer;
  }
}

/** A client that can make partition-end probes (librdkafka); kafkajs commits past markers itself. */
export interface PartitionEndProbes {
  partitionEndProbe(groupId: string): PartitionEndProbe;
}

export function hasPartitionEndProbes(client: object): client is PartitionEndProbes {
  return typeof (client as Partial<PartitionEndProbes>).partitionEndProbe === 'function';
}

/** What an exactly-once consumer knows of a partition, for choosing the next one to probe. */
export interface EndProbeCandidate {
  /** Its committed offset may stand before trailing markers. */
  checkEnd: boolean;
  /** Another instance holds its transactional id. */
  fenced: boolean;
  /** Work holding or waiting for the partition's lock. */
  busy: number;
  /** When its last work ended. */
  lastWorkAt: number;
  /** Not probed before this time (backoff). */
  nextProbeAt: number;
}

/**
 * The partition to probe now, or null: assigned to this member, possibly before markers, not
 * fenced, no work held or waiting, idle for `idleMs`, and out of its backoff.
 */
export function partitionToProbe(
  partitions: Iterable<[number, EndProbeCandidate]>,
  assigned: ReadonlySet<number>,
  now: number,
  idleMs: number,
): number | null {
  for (const [partition, state] of partitions) {
    if (!assigned.has(partition) || !state.checkEnd || state.fenced || state.busy > 0) continue;
    if (now - state.lastWorkAt < idleMs || now < state.nextProbeAt) continue;
    return partition;
  }
  return null;
}
