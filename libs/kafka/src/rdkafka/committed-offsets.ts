/** A consumer of the package as the offsets reader uses it: connected, never subscribed. */
export interface OffsetsReaderConsumer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  committed(
    partitions: { topic: string; partition: number }[],
    timeoutMs: number,
  ): Promise<{ topic?: string; partition?: number; offset?: string | null }[]>;
}

export interface CommittedOffsetsOptions {
  /**
   * A consumer of the group that never joins it (see CommittedOffsets); read_committed when
   * `stable`, read_uncommitted otherwise.
   */
  reader(groupId: string, stable: boolean): OffsetsReaderConsumer;
  /** The topic's partition numbers (cluster metadata). */
  partitions(topic: string): Promise<number[]>;
  /** How long one read waits for the group coordinator. */
  timeoutMs: number;
}

/**
 * Committed offsets of a consumer group, read with librdkafka's consumer-group machinery instead
 * of its Admin API.
 *
 * librdkafka's ListConsumerGroupOffsets (what the package's `admin.fetchOffsets` calls) is a
 * coordinator request with a use-after-free (librdkafka 2.15.1 and earlier, still open upstream):
 * a request that times out while the group coordinator is unreachable is completed a second time
 * once the coordinator is back, and the process aborts in rd_kafka_enq_once_del_source_return
 * ("Assertion `eonce->refcnt > 0' failed"); an early NOT_COORDINATOR answer to the same request
 * dereferences the admin client's missing group handle (SIGSEGV). A broker loss under a service's
 * periodic lag reads was enough for the first.
 *
 * Here each group gets one consumer of its own that connects but never subscribes, so it never
 * joins the group (no rebalance, no commits: `enable.auto.commit` off), and its `committed()` goes
 * through librdkafka's group handle, which waits for the coordinator and retries NOT_COORDINATOR.
 *
 * Stable reads (the default) go through a read_committed reader, for which librdkafka asks for
 * stable offsets: a transaction's offsets count once it commits, and while one is open the broker
 * answers UNSTABLE_OFFSET_COMMIT, which librdkafka retries (from 100 ms, with backoff) inside the
 * call. Claiming a partition under exactly-once needs that. The call holds a libuv worker for
 * as long as it lasts, the same pool sharp's decodes and resizes run on, so a service under load,
 * whose partitions always have a transaction open, would hold one worker for retries every time
 * it reads its lag. Unstable reads (`stable: false`, for the lag gauge) go through a second,
 * read_uncommitted reader and take the last committed offset as it is.
 *
 * Concurrent reads of the same group, topic and kind share one request, so a coordinator outage
 * holds at most one libuv worker per group, topic and kind.
 */
export class CommittedOffsets {
  private readonly readers = new Map<string, Promise<OffsetsReaderConsumer>>();
  private readonly inFlight = new Map<string, Promise<{ partition: number; offset: string }[]>>();
  private closed = false;

  constructor(private readonly options: CommittedOffsetsOptions) {}

  /** One entry per partition of the topic; offset '-1' where the group committed nothing. */
  fetch(groupId: string, topic: string, stable = true): Promise<{ partition: number; offset: string }[]> {
    if (this.closed) return Promise.reject(new Error('the admin client is disconnected'));
    const key = `${groupId}\u0000${topic}\u0000${readKind(stable)}`;
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    const reading = this.read(groupId, topic, stable).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, reading);
    return reading;
  }

  /** Disconnects every reader (reads in flight end with an error). */
  async close(): Promise<void> {
    this.closed = true;
    const readers = [...this.readers.values()];
    this.readers.clear();
    await Promise.all(
      readers.map(async (connecting) => {
        const reader = await connecting.catch(() => null);
        await reader?.disconnect().catch(() => undefined);
      }),
    );
  }

  private async read(groupId: string, topic: string, stable: boolean): Promise<{ partition: number; offset: string }[]> {
    const partitions = await this.options.partitions(topic);
    if (partitions.length === 0) return [];
    const reader = await this.readerOf(groupId, stable);
    const rows = await reader.committed(
      partitions.map((partition) => ({ topic, partition })),
      this.options.timeoutMs,
    );
    return committedRows(rows, topic, partitions);
  }

  private readerOf(groupId: string, stable: boolean): Promise<OffsetsReaderConsumer> {
    if (this.closed) return Promise.reject(new Error('the admin client is disconnected'));
    const key = `${groupId}\u0000${readKind(stable)}`;
    let connecting = this.readers.get(key);
    if (!connecting) {
      const reader = this.options.reader(groupId, stable);
      connecting = reader.connect().then(
        () => reader,
        async (error: unknown) => {
          // Connected once per instance: the next read gets a new one.
          if (this.readers.get(key) === connecting) this.readers.delete(key);
          await reader.disconnect().catch(() => undefined);
          throw error;
        },
      );
      this.readers.set(key, connecting);
    }
    return connecting;
  }
}

/** A read's kind, in the keys of readers and of reads in flight. */
function readKind(stable: boolean): string {
  return stable ? 'stable' : 'last';
}

/**
 * The package's answer to `committed()` as offsets: a partition that failed comes back as an
 * error in its slot (without topic or partition), which fails the whole read rather than passing
 * for "nothing committed"; a partition without a committed offset comes back without one ('-1').
 */
export function committedRows(
  rows: { topic?: string; partition?: number; offset?: string | null }[],
  topic: string,
  partitions: number[],
): { partition: number; offset: string }[] {
  const byPartition = new Map<number, string>();
  for (const row of rows) {
    if (row instanceof Error) throw new Error(`committed offsets of ${topic}: ${row.message}`);
    if (typeof row.partition !== 'number' || (row.topic !== undefined && row.topic !== topic)) {
      throw new Error(`committed offsets of ${topic}: a partition failed`);
    }
    const offset = row.offset === null || row.offset === undefined ? '-1' : String(row.offset);
    if (!/^-?\d+$/.test(offset)) throw new Error(`committed offsets of ${topic}: unexpected offset ${offset}`);
    byPartition.set(row.partition, BigInt(offset) >= 0n ? offset : '-1');
  }
  return partitions.map((partition) => {
    const offset = byPartition.get(partition);
    if (offset === undefined) throw new Error(`committed offsets of ${topic}: no answer for partition ${partition}`);
    return { partition, offset };
  });
}
