import { dlqTopic, encodeFindingsEvent, errorFindingsEvent, type ErrorCode, HEADERS, type Stage, ThoraxError } from '@thorax/contracts';
import type { HealthRegistry, Logger, ThoraxMetrics } from '@thorax/observability';
import { ensureTraceparent, healthy, parseTraceparent, unhealthy } from '@thorax/observability';
import type { KafkaMessage } from 'kafkajs';
import type { BatchPayload, ClientAdmin, ClientConsumer, ClientProducer, ClientTransaction, KafkaClient } from './client-port';
import type {
  BatchConsumerSpec,
  BatchHandler,
  ConsumerSpec,
  Delivery,
  FailureContext,
  ItemResult,
  MessageHandler,
  RecordPosition,
} from './consumer-port';
import { decide, DEFAULT_RETRY_POLICY, refusedRecordType, type RetryPolicy } from './failure-policy';
import { isKafkaClientError } from './kafka-errors';
import { hasPartitionEndProbes, offsetPastMarkers, type PartitionEndProbe, partitionToProbe } from './rdkafka/partition-end-probe';
import { decodeHeaders, forwardedHeaders, type OutgoingRecord, type Publisher, recordId } from './records';
import {
  currentTransaction,
  DEFAULT_TRANSACTION_LIMITS,
  type DeliveryMode,
  inTransaction,
  isFencedError,
  TransactionScope,
  tryInTransaction,
  whileConcurrent,
} from './transactions';

/** How a RecordConsumer hands over records: one at a time, or in batches. */
export type RecordHandling<T> = { kind: 'single'; handler: MessageHandler<T> } | { kind: 'batch'; handler: BatchHandler<T> };

/**
 * Exactly-once: a transaction is committed when it holds this many inputs, or when it has been
 * open this long (so read_committed consumers downstream wait at most about this for a record, and
 * a failure repeats at most this much work), and at the end of every fetch.
 */
export const TRANSACTION_MAX_RECORDS = 500;
export const TRANSACTION_MAX_MS = 1_000;
/** Kafka aborts a transaction left open this long (a producer that died inside one). */
export const TRANSACTION_TIMEOUT_MS = 60_000;
/**
 * Exactly-once on librdkafka: a partition with no work for this long (nothing fetched, its lock
 * free) whose committed offset may stand before trailing transaction markers is probed
 * (settleIdlePartitions); probes that find nothing to commit back off up to the maximum.
 */
export const END_PROBE_IDLE_MS = 1_500;
export const END_PROBE_BACKOFF_MS = 1_000;
export const END_PROBE_MAX_BACKOFF_MS = 30_000;

/** Exactly-once: the transactional producer of one input partition and what is known of it. */
interface PartitionWork<T> {
  producer: ClientProducer | null;
  transaction: ClientTransaction | null;
  /** The producer is initialised (earlier holders of its id fenced) and the position checked. */
  claimed: boolean;
  /** Another instance took over the transactional id: no work until the next assignment. */
  fenced: boolean;
  /** The last transaction's buffered flush was refused: publish call by call in the next one. */
  careful: boolean;
  /** The next offset to consume as last committed (claimed or committed here); null: unknown or none. */
  committed: string | null;
  collector: BatchCollector<T> | null;
  /** Outputs refused in earlier tries of the current transaction (librdkafka; TransactionScope). */
  refusals: Map<string, unknown>;
  /** Serialises the partition's fetches and marker commits (one transaction at a time). */
  lock: Promise<void>;
  /** Work holding or waiting for the lock. */
  busy: number;
  /** When the partition's last work ended. */
  lastWorkAt: number;
  /** Its committed offset may stand before trailing markers (librdkafka: settleIdlePartitions). */
  checkEnd: boolean;
  /** Not probed again before this time, nor with less backoff than probeBackoffMs. */
  nextProbeAt: number;
  probeBackoffMs: number;
}

/** A record as it came off the wire, headers decoded, trace context ensured. */
interface RawRecord {
  position: RecordPosition;
  value: Buffer | null;
  headers: Record<string, string>;
}

/**
 * A consumer group member with explicit outcomes for every record (ok, retried, dead-lettered)
 * and at-least-once delivery: an offset is resolved, and later committed, only after the
 * record's outputs (or its DLQ record and error event) are acknowledged by Kafka
 * (docs/contract.md "Delivery guarantees"). Records are decoded here (spec.decode); handlers see
 * messages (ConsumerPort), never the Kafka client.
 */
export class RecordConsumer<T> {
  private readonly consumer: ClientConsumer;
  private readonly admin: ClientAdmin;
  private readonly retry: RetryPolicy;
  private readonly collector: BatchCollector<T> | null;
  private joined = false;
  private brokerSeenAt = Date.now();
  private crashed: string | null = null;
  private lagTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private readonly partitions = new Map<number, PartitionWork<T>>();
  /** Exactly-once on librdkafka: reads whether idle partitions end in markers only. */
  private readonly endProbe: PartitionEndProbe | null;
  private endProbeTimer: NodeJS.Timeout | null = null;
  private probing: Promise<void> | null = null;
  /** The input partitions the group assigned to this member; empty while it rebalances. */
  private assigned = new Set<number>();

  constructor(
    private readonly kafka: KafkaClient,
    private readonly options: ConsumerSpec<T> | BatchConsumerSpec<T>,
    private readonly handling: RecordHandling<T>,
    private readonly publisher: Publisher,
    private readonly metrics: ThoraxMetrics,
    health: HealthRegistry,
    private readonly log: Logger,
    /** KAFKA_DELIVERY; see docs/contract.md "Delivery guarantees". */
    private readonly delivery: DeliveryMode = 'at-least-once',
  ) {
    this.retry = options.retry ?? DEFAULT_RETRY_POLICY;
    this.collector =
      handling.kind === 'batch'
        ? new BatchCollector(handling.handler, (options as BatchConsumerSpec<T>).maxBatchRecords ?? 500, (options as BatchConsumerSpec<T>).lingerMs ?? 5)
        : null;
    this.consumer = kafka.consumer(
      {
        groupId: options.groupId,
        sessionTimeoutMs: options.sessionTimeoutMs ?? 30_000,
        heartbeatIntervalMs: 3_000,
        maxBytesPerPartition: options.maxBytesPerPartition ?? 52_428_800,
        // Exactly-once: offsets are committed only inside the transactions (sendOffsets).
        // At-least-once: resolved offsets are committed every second, also inside a long batch,
        // so a consumer restarted after a broker failover replays at most about a second of work.
        autoCommit: delivery !== 'exactly-once',
        autoCommitIntervalMs: 1_000,
        fromBeginning: true,
        restartOnFailure: true,
        // librdkafka: the records of one eachBatch call (kafkajs hands over whole fetches).
        maxBatchRecords: TRANSACTION_MAX_RECORDS,
      },
      {
        onAssigned: (assignment) => {
          this.joined = true;
          this.log.info({ group: options.groupId, assignment }, 'joined consumer group');
          this.assigned = new Set(assignment[options.topic] ?? []);
          if (this.delivery === 'exactly-once') void this.reassigned(assignment[options.topic] ?? []);
        },
        onRebalancing: () => {
          this.assigned = new Set();
          this.log.info({ group: options.groupId }, 'rebalancing');
        },
        onCrash: (error, restart) => {
          this.log.error({ err: error, restart }, 'consumer crashed');
          this.joined = false;
          if (!restart) this.crashed = error.message;
        },
        // A fetch of only transaction markers or aborted records never reaches eachBatch (kafkajs):
        // move the committed offset past it, so an idle partition shows no lag (KEDA, alerts).
        ...(delivery === 'exactly-once'
          ? {
              onBatchEnd: ({ topic, partition, batchSize, firstOffset, lastOffset }) => {
                if (batchSize === 0 && topic === options.topic && firstOffset !== null && BigInt(lastOffset) >= 0n) {
                  void this.commitSkipped(partition, firstOffset, lastOffset);
                }
              },
            }
          : {}),
      },
    );
    this.admin = kafka.admin();
    // librdkafka never hands markers to the application (no onBatchEnd for them): idle partitions
    // are probed instead (settleIdlePartitions).
    this.endProbe = delivery === 'exactly-once' && hasPartitionEndProbes(kafka) ? kafka.partitionEndProbe(options.groupId) : null;
    health.addLiveness(`consumer:${options.topic}`, () =>
      this.crashed ? unhealthy(`consumer crashed: ${this.crashed}`) : healthy,
    );
    health.addReadiness(`consumer:${options.topic}`, () => {
      if (!this.joined) return unhealthy(`not a member of ${options.groupId}`);
      const interval = options.lagIntervalMs ?? 10_000;
      const silentMs = Date.now() - this.brokerSeenAt;
      if (interval > 0 && silentMs > 3 * interval) {
        return unhealthy(`broker has not answered offset requests for ${Math.round(silentMs / 1000)} s`);
      }
      return healthy;
    });
  }

  async start(): Promise<void> {
    await this.consumer.connect();
    await this.admin.connect();
    await this.consumer.subscribe(this.options.topic);
    const transactional = this.delivery === 'exactly-once';
    await this.consumer.run({
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.options.partitionsConsumedConcurrently ?? 1,
      eachBatch: (payload) => (transactional ? this.eachBatchTransactional(payload) : this.eachBatch(payload)),
    });
    const interval = this.options.lagIntervalMs ?? 10_000;
    if (interval > 0) {
      // The first read at a random point of the interval: the consumers of one process (all four
      // stages under `npm start`) started together would otherwise read at the same instants.
      this.lagTimer = setTimeout(() => {
        void this.updateLag();
        this.lagTimer = setInterval(() => void this.updateLag(), interval);
        this.lagTimer.unref();
      }, Math.floor(Math.random() * interval));
      this.lagTimer.unref();
    }
    if (this.endProbe) {
      this.endProbeTimer = setInterval(() => void this.settleIdlePartitions(), END_PROBE_IDLE_MS / 3);
      this.endProbeTimer.unref();
    }
    this.log.info({ topic: this.options.topic, group: this.options.groupId }, 'consuming');
  }

  /** Stops fetching, lets in-flight records finish, commits resolved offsets, disconnects. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // clearInterval clears a timeout too (one timer id space).
    if (this.lagTimer) clearInterval(this.lagTimer);
    if (this.endProbeTimer) clearInterval(this.endProbeTimer);
    await this.probing;
    await this.endProbe?.close();
    await this.consumer.disconnect();
    await Promise.all([...this.partitions.values()].map((work) => this.release(work)));
    await this.admin.disconnect();
    this.log.info({ topic: this.options.topic }, 'consumer stopped');
  }

  private async eachBatch(payload: BatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale } = payload;
    this.metrics.consumerBatchSize.observe({ topic: batch.topic }, batch.messages.length);
    // A batch handler gets the whole fetch at once (the collector cuts it to maxBatchRecords).
    const window = this.collector ? Number.MAX_SAFE_INTEGER : Math.max(1, this.options.maxInFlightPerPartition ?? 1);
    // Records of one partition run up to `window` at a time (so a batcher downstream sees more
    // than one record per partition), but offsets resolve strictly in order: an offset is
    // resolved only when it and every record before it have an outcome.
    const inFlight: { offset: string; done: Promise<void> }[] = [];
    const settleHead = async () => {
      const head = inFlight.shift();
      if (!head) return;
      await head.done;
      resolveOffset(head.offset);
      await heartbeat();
      await commitOffsetsIfNecessary();
    };
    for (const message of batch.messages) {
      if (!isRunning() || isStale()) break;
      const done = this.process(toRecord(batch.topic, batch.partition, message, this.options.topic));
      done.catch(() => undefined); // observed when it reaches the head of the window
      inFlight.push({ offset: message.offset, done });
      if (inFlight.length >= window) await settleHead();
    }
    while (inFlight.length > 0) await settleHead();
    await commitOffsetsIfNecessary();
  }

  /**
   * Exactly-once consume-process-produce for one partition's fetch (docs/kafka-cluster.md
   * "Exactly-once"). The partition has its own transactional producer, id
   * `<group>-<topic>-<partition>`, so whoever holds the partition holds the id: starting it fences
   * every earlier holder (a zombie of a previous assignment, a killed process) and aborts or
   * completes their open transaction, after which the committed offset is read again and the
   * consumer moved there if its position came from before that. Records are then handled as in
   * at-least-once mode, but what their handlers publish goes into the partition's transaction,
   * and the transaction commits the outputs with the next input offset (sendOffsets) when it
   * holds TRANSACTION_MAX_RECORDS inputs, has been open TRANSACTION_MAX_MS, or the fetch ends;
   * inputs that published nothing have their offset committed by the group member instead, with
   * no transaction (TransactionScope.commit). A failure (a broker failure, a record given back)
   * aborts it and moves the consumer back to its first input; a fenced producer stops the
   * partition's work until the next assignment.
   */
  private async eachBatchTransactional(payload: BatchPayload): Promise<void> {
    const { batch } = payload;
    if (batch.messages.length === 0) return;
    this.metrics.consumerBatchSize.observe({ topic: batch.topic }, batch.messages.length);
    const work = this.partitionWork(batch.partition);
    await this.locked(work, () => this.transactBatch(payload, work));
  }

  private async transactBatch(payload: BatchPayload, work: PartitionWork<T>): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale } = payload;
    const { topic, partition } = batch;
    const first = batch.messages[0]?.offset as string;
    if (work.fenced) {
      // Not ours any more: give the fetch back and wait for the group to reassign.
      this.consumer.seek({ topic, partition, offset: first });
      await sleep(1_000);
      return;
    }
    const log = this.log.child({ topic, partition });
    let scope: TransactionScope | null = null;
    /** The scope being committed (its flush may be refused there: see the catch below). */
    let committing: TransactionScope | null = null;
    let scopeFirst: string | null = null;
    const window = this.collector ? Number.MAX_SAFE_INTEGER : Math.max(1, this.options.maxInFlightPerPartition ?? 1);
    const inFlight: { offset: string; done: Promise<void> }[] = [];
    try {
      if (!work.claimed) {
        const committed = await this.claim(work, topic, partition, log);
        if (committed !== null && BigInt(first) < BigInt(committed)) {
          // Fetched from a position older than what the previous holder committed.
          log.info({ from: first, to: committed }, 'moving to the offset the previous holder committed');
          this.consumer.seek({ topic, partition, offset: committed });
          return;
        }
      }
      let last: string | null = null;
      const commit = async (upTo: string | null = last) => {
        if (!scope || upTo === null) return;
        const done = scope;
        committing = done;
        scope = null;
        scopeFirst = null;
        const next = (BigInt(upTo) + 1n).toString();
        // Inputs that published nothing (results: rows stored, nothing for Kafka) commit their
        // offset outside the transaction, which stays open and unused for the next fetch. On
        // librdkafka that commit is only queued (commitAsync): a failure is not seen here, and
        // one held back by a coordinator failover could land after a later transaction's offset
        // and set the partition back (docs/kafka-cluster.md "Exactly-once"): its inputs are
        // then processed again after a restart. Only consumers that publish nothing on their
        // normal path (results) commit this way.
        const transactional = await done.commit(this.options.groupId, topic, partition, next, log, () =>
          this.consumer.commitOffsets([{ topic, partition, offset: next }]),
        );
        committing = null;
        work.committed = next;
        if (transactional) work.transaction = null;
        this.metrics.consumerCommits.inc({ topic, kind: transactional ? 'transaction' : 'offsets' });
        work.careful = false;
        work.refusals.clear();
        // The input's producer commits transactions too: its marker may follow the last record.
        work.checkEnd = true;
        work.probeBackoffMs = END_PROBE_BACKOFF_MS;
        work.nextProbeAt = 0;
      };
      const settleHead = async () => {
        const head = inFlight.shift();
        if (!head) return;
        await head.done;
        resolveOffset(head.offset);
        last = head.offset;
        if (scope) scope.inputs += 1;
        await heartbeat();
      };
      let complete = true;
      for (const message of batch.messages) {
        if (!isRunning() || isStale()) {
          complete = false;
          break;
        }
        if (!scope) {
          work.transaction ??= await (work.producer as ClientProducer).transaction();
          scope = new TransactionScope(work.transaction, work.careful, DEFAULT_TRANSACTION_LIMITS, {
            abortsTransaction: this.kafka.kind === 'librdkafka',
            known: work.refusals,
          });
          scopeFirst = message.offset;
        }
        const current: TransactionScope = scope;
        const record = toRecord(topic, partition, message, this.options.topic);
        const done = inTransaction(current, () => this.process(record));
        done.catch(() => undefined); // observed when it reaches the head of the window
        inFlight.push({ offset: message.offset, done });
        if (inFlight.length >= window) await settleHead();
        if (current.failure) throw current.failure;
        if (current.inputs >= TRANSACTION_MAX_RECORDS || Date.now() - current.startedAt >= TRANSACTION_MAX_MS) {
          while (inFlight.length > 0) await settleHead();
          await commit();
        }
      }
      while (inFlight.length > 0) await settleHead();
      // The whole fetch done: the offset goes past its trailing transaction markers too.
      await commit(complete ? batch.lastOffset() : last);
    } catch (error) {
      // Let what is still running finish before anything moves (its outputs are aborted with the rest).
      await Promise.allSettled(inFlight.map((f) => f.done));
      // A refusal of the buffered outputs shows at the commit's flush: the next try is careful.
      const failed = (scope ?? committing) as TransactionScope | null;
      failed?.abandoned();
      if (failed?.refused) work.careful = true;
      await this.abandon(work, error, log);
      // Back to the first input of the aborted transaction (or of the fetch, before one began);
      // after an unclear commit the next claim finds where the transaction really left off.
      this.consumer.seek({ topic, partition, offset: scopeFirst ?? first });
      if (!work.fenced) await sleep(500);
    }
  }

  /** Runs `fn` when the partition's previous work is done. */
  private async locked(work: PartitionWork<T>, fn: () => Promise<void>): Promise<void> {
    const previous = work.lock;
    let release: () => void = () => undefined;
    work.lock = new Promise<void>((resolve) => (release = resolve));
    work.busy += 1;
    await previous;
    try {
      await fn();
    } finally {
      work.busy -= 1;
      work.lastWorkAt = Date.now();
      release();
    }
  }

  /**
   * Commits the offset after a fetch that held only markers or aborted records, in a transaction
   * of its own (commitOffsetOnly); skipped when the partition is not claimed (its next fetch
   * commits past them anyway). Only records that read_committed never delivers are passed over.
   */
  private async commitSkipped(partition: number, firstOffset: string, lastOffset: string): Promise<void> {
    if (this.stopping) return;
    const work = this.partitionWork(partition);
    await this.locked(work, async () => {
      if (work.fenced || this.stopping) return;
      const log = this.log.child({ topic: this.options.topic, partition });
      try {
        if (!work.claimed) await this.claim(work, this.options.topic, partition, log);
        // Only when everything before the skipped records is committed: never past unprocessed ones.
        if (work.committed === null || BigInt(work.committed) < BigInt(firstOffset) || BigInt(work.committed) > BigInt(lastOffset)) return;
        await this.commitOffsetOnly(work, partition, (BigInt(lastOffset) + 1n).toString());
      } catch (error) {
        await this.abandon(work, error, log);
      }
    });
  }

  /**
   * Commits the partition's offset past markers in a transaction of its own (no records); under
   * its lock. Not a plain commit: on librdkafka that is only queued (`commitAsync`), and one held
   * back by a coordinator failover could land after the partition's next transaction and set its
   * offset back before records whose outputs are committed (see the plain commits of transactBatch).
   */
  private async commitOffsetOnly(work: PartitionWork<T>, partition: number, offset: string): Promise<void> {
    if (!work.producer) return;
    work.transaction ??= await work.producer.transaction();
    const transaction = work.transaction;
    await whileConcurrent(() =>
      transaction.sendOffsets({
        consumerGroupId: this.options.groupId,
        topics: [{ topic: this.options.topic, partitions: [{ partition, offset }] }],
      }),
    );
    await transaction.commit();
    work.committed = offset;
    work.transaction = null;
    this.metrics.consumerCommits.inc({ topic: this.options.topic, kind: 'transaction' });
  }

  /**
   * Exactly-once on librdkafka, which never hands transaction markers to the application: the
   * input partitions end in the commit markers of the producing stage's transactions, and a
   * committed offset of `last record + 1` would stay one short of the end (a lag of 1 forever).
   * One idle partition at a time (no work for END_PROBE_IDLE_MS, its lock free) whose committed
   * offset may stand before such markers is probed from that offset (PartitionEndProbe): when a
   * read_committed read from there reaches the partition's last stable offset without a record,
   * that offset is committed, under the partition's lock and only if nothing was committed
   * meanwhile; when a record is found, the group member processes it (nothing happens here).
   */
  private async settleIdlePartitions(): Promise<void> {
    if (this.probing || this.stopping || !this.endProbe) return;
    const partition = partitionToProbe(this.partitions, this.assigned, Date.now(), END_PROBE_IDLE_MS);
    const work = partition === null ? undefined : this.partitions.get(partition);
    if (partition === null || !work) return;
    this.probing = this.settleEnd(partition, work, this.endProbe).finally(() => (this.probing = null));
  }

  private async settleEnd(partition: number, work: PartitionWork<T>, probe: PartitionEndProbe): Promise<void> {
    const { topic } = this.options;
    const log = this.log.child({ topic, partition });
    const backOff = (reason: string) => {
      work.nextProbeAt = Date.now() + work.probeBackoffMs;
      log.debug({ reason, retryInMs: work.probeBackoffMs }, 'partition end not settled');
      work.probeBackoffMs = Math.min(END_PROBE_MAX_BACKOFF_MS, work.probeBackoffMs * 2);
    };
    if (!work.claimed) {
      // Assigned but not fetched since (a restart at an offset before markers only): claim it.
      await this.locked(work, async () => {
        // Never claimed for a partition the group may be handing to another member.
        if (work.claimed || work.fenced || this.stopping || !this.assigned.has(partition)) return;
        try {
          await this.claim(work, topic, partition, log);
        } catch (error) {
          await this.abandon(work, error, log);
        }
      });
      if (!work.claimed) return backOff('not claimed');
    }
    const from = work.committed;
    if (from === null) {
      // Nothing committed: the group member starts at the beginning and commits after a record.
      work.checkEnd = false;
      return;
    }
    const result = await probe.probe(topic, partition, from);
    if (result.kind === 'at-end') {
      work.checkEnd = false;
      work.probeBackoffMs = END_PROBE_BACKOFF_MS;
      return;
    }
    const next = offsetPastMarkers(from, result);
    if (next === null) return backOff(result.kind === 'unknown' ? result.reason : `a record at ${result.kind === 'records' ? result.offset : '?'}`);
    await this.locked(work, async () => {
      // Only from where the probe started: anything committed meanwhile makes it moot.
      if (work.committed !== from || !work.claimed || work.fenced || this.stopping || !this.assigned.has(partition)) return;
      try {
        await this.commitOffsetOnly(work, partition, next);
        work.checkEnd = false;
        work.probeBackoffMs = END_PROBE_BACKOFF_MS;
        log.debug({ from, to: next }, 'committed past trailing transaction markers');
      } catch (error) {
        await this.abandon(work, error, log);
      }
    });
  }

  private partitionWork(partition: number): PartitionWork<T> {
    let work = this.partitions.get(partition);
    if (!work) {
      const batch = this.options as BatchConsumerSpec<T>;
      work = {
        producer: null,
        transaction: null,
        claimed: false,
        fenced: false,
        careful: false,
        committed: null,
        refusals: new Map(),
        busy: 0,
        lastWorkAt: Date.now(),
        checkEnd: true,
        nextProbeAt: 0,
        probeBackoffMs: END_PROBE_BACKOFF_MS,
        collector:
          this.handling.kind === 'batch' ? new BatchCollector(this.handling.handler, batch.maxBatchRecords ?? 500, batch.lingerMs ?? 5) : null,
        lock: Promise.resolve(),
      };
      this.partitions.set(partition, work);
    }
    return work;
  }

  /**
   * Takes over the partition's transactional id (fencing earlier holders; their open transaction
   * is aborted, or completed if it was already committing) and answers the offset committed for
   * the partition, which is final only after that. null: nothing committed yet.
   */
  private async claim(work: PartitionWork<T>, topic: string, partition: number, log: Logger): Promise<string | null> {
    await this.release(work);
    const transactionalId = `${this.options.groupId}-${topic}-${partition}`;
    const producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      retries: 10,
      transactional: { id: transactionalId, timeoutMs: TRANSACTION_TIMEOUT_MS },
    });
    work.producer = producer;
    await producer.connect();
    // The first transaction initialises the producer id: the broker bumps the epoch (fencing)
    // and settles the previous holder's transaction before it answers.
    work.transaction = await producer.transaction();
    const offsets = await this.admin.fetchOffsets(this.options.groupId, topic);
    const committed = offsets.find((p) => p.partition === partition)?.offset ?? '-1';
    work.claimed = true;
    work.fenced = false;
    work.committed = BigInt(committed) >= 0n ? committed : null;
    log.info({ transactionalId, committed }, 'transactional producer started for the partition');
    return BigInt(committed) >= 0n ? committed : null;
  }

  /** After a failure: aborts (best effort) and drops the producer; the next fetch claims again. */
  private async abandon(work: PartitionWork<T>, error: unknown, log: Logger): Promise<void> {
    this.metrics.consumerCommits.inc({ topic: this.options.topic, kind: 'abandoned' });
    const fenced = isFencedError(error);
    if (fenced) {
      work.fenced = true;
      log.warn({ err: error }, 'transactional producer fenced: another instance holds this partition; its work stops here');
    } else {
      log.warn({ err: error }, 'transaction aborted; its inputs will be processed again from the last committed offset');
      if (work.transaction?.isActive()) await work.transaction.abort().catch(() => undefined);
    }
    await this.release(work);
  }

  private async release(work: PartitionWork<T>): Promise<void> {
    const producer = work.producer;
    work.producer = null;
    work.transaction = null;
    work.claimed = false;
    if (producer) await producer.disconnect().catch(() => undefined);
  }

  /** A new assignment: every partition is claimed again before its next work; others' producers go. */
  private async reassigned(assigned: number[]): Promise<void> {
    const keep = new Set(assigned);
    for (const [partition, work] of this.partitions) {
      work.fenced = false;
      if (!keep.has(partition)) {
        await this.release(work);
        this.partitions.delete(partition);
      } else {
        work.claimed = false;
        work.checkEnd = true;
        work.nextProbeAt = 0;
        work.probeBackoffMs = END_PROBE_BACKOFF_MS;
      }
    }
    // Probed once idle, even before a fetch (librdkafka: a committed offset before markers only).
    if (this.endProbe) for (const partition of assigned) this.partitionWork(partition);
  }

  /** Stops fetching new records (in-flight ones finish); used for backpressure. */
  pause(): void {
    this.consumer.pause(this.options.topic);
  }

  resume(): void {
    this.consumer.resume(this.options.topic);
  }

  private async process(record: RawRecord): Promise<void> {
    let delivery: Delivery<T> | null = null;
    let decodeError: unknown = null;
    try {
      delivery = this.deliver(record);
    } catch (error) {
      decodeError =
        error instanceof ThoraxError
          ? error
          : new ThoraxError('INVALID_MESSAGE', `undecodable record: ${(error as Error).message}`, {
              stage: this.options.stage,
              cause: error,
            });
    }
    if (delivery === null) {
      // Nothing to retry: a value that does not decode never will.
      const decision = decide(decodeError, this.retry.maxAttempts, this.retry, () => false);
      const code = decision.kind === 'dead-letter' ? decision.code : 'INVALID_MESSAGE';
      const message = decision.kind === 'dead-letter' ? decision.message : String(decodeError);
      await tryInTransaction(() => this.deadLetter(record, null, code, message, recordLogger(this.log, record)));
      return;
    }
    const { topic } = record.position;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const current = delivery;
        await tryInTransaction(() => this.attempt(current, attempt));
        this.metrics.messages.inc({ topic, outcome: 'ok' });
        return;
      } catch (error) {
        const decision = decide(error, attempt, this.retry, isKafkaClientError);
        if (decision.kind === 'rethrow') {
          delivery.log.warn({ err: error }, 'broker failure; the record will be redelivered');
          throw error;
        }
        if (decision.kind === 'retry') {
          this.metrics.messages.inc({ topic, outcome: 'retried' });
          delivery.log.warn({ err: error, attempt, delayMs: decision.delayMs }, 'retrying record');
          await new Promise((r) => setTimeout(r, decision.delayMs));
          continue;
        }
        const failed = delivery;
        await tryInTransaction(() => this.deadLetter(record, failed.message, decision.code, decision.message, failed.log, stageOf(error)));
        return;
      }
    }
  }

  /** One try: the handler, or the batch (first try) and then a batch of one (retries). */
  private async attempt(delivery: Delivery<T>, attempt: number): Promise<void> {
    if (this.handling.kind === 'single') return this.handling.handler.handle(delivery);
    // Exactly-once: a handleBatch call holds the records of one partition (one transaction).
    const collector = this.delivery === 'exactly-once' ? (this.partitions.get(delivery.position.partition)?.collector ?? null) : this.collector;
    const result = attempt === 1 && collector ? await collector.submit(delivery) : await handleAlone(this.handling.handler, delivery);
    if (!result.ok) throw result.error;
  }

  /** The decoded record for handlers; throws what `decode` throws. */
  private deliver(record: RawRecord): Delivery<T> {
    const value = record.value ?? EMPTY;
    const message = this.options.decode(value, record.headers);
    const parent = this.log;
    let log: Logger | null = null;
    return {
      message,
      forward: forwardedHeaders(record.headers),
      headers: record.headers,
      position: record.position,
      // A child logger (and the traceparent parse it needs) only for records that log.
      get log() {
        return (log ??= recordLogger(parent, record));
      },
    };
  }

  private describe(record: RawRecord, message: T | null): FailureContext {
    try {
      if (this.options.describe) return this.options.describe(message, record.position, record.headers);
    } catch {
      // fall through: an error event must go out whatever the record holds
    }
    return { id: recordId(record.position) };
  }

  private async deadLetter(
    record: RawRecord,
    decoded: T | null,
    code: ErrorCode,
    message: string,
    log: Logger,
    failedStage?: Stage,
  ): Promise<void> {
    // The stage that failed: this one, or a co-located stage further on (LocalTopics).
    const stage = failedStage ?? this.options.stage;
    const context = this.describe(record, decoded);
    const headers: Record<string, string> = {
      ...record.headers,
      [HEADERS.errorCode]: code,
      [HEADERS.errorMessage]: message.slice(0, 1024),
      [HEADERS.failedStage]: stage,
    };
    // The DLQ copy first, in a request of its own, and the error event only once the copy is
    // acknowledged. A copy the DLQ topic refuses (its own size limit) fails the whole request it
    // is in, while other partitions of that request may already have taken their records (this
    // record's event, or other inputs' outputs), which the re-send would then write twice.
    const copy: OutgoingRecord = {
      topic: dlqTopic(record.position.topic),
      key: context.id,
      value: record.value ?? Buffer.alloc(0),
      headers,
    };
    try {
      await this.publisher.publish([copy], { alone: true });
    } catch (error) {
      const refused = refusedRecordType(error);
      if (refused === null) throw error;
      // The DLQ topic refused the copy itself (an input above its max.message.bytes): keep the
      // headers and say how long the value was. A dead letter is never dead-lettered again; if
      // this is refused too, the error propagates and the record is redelivered.
      log.error({ code, stage, refused }, 'the DLQ topic refused the dead letter; publishing it without its value');
      await this.publisher.publish([
        {
          ...copy,
          value: Buffer.alloc(0),
          headers: { ...headers, [HEADERS.valueOmitted]: String(record.value?.length ?? 0) },
        },
      ]);
    }
    if (this.options.findingsTopic) {
      const event = errorFindingsEvent({
        id: context.id,
        study: context.study ?? {},
        receivedAt: context.receivedAt ?? new Date(record.position.timestamp),
        error: { code, stage, message },
      });
      const traceparent = record.headers[HEADERS.traceparent];
      const forwarded: Record<string, string> = traceparent ? { [HEADERS.traceparent]: traceparent } : {};
      await this.publisher.publish([
        { topic: this.options.findingsTopic, key: context.id, value: encodeFindingsEvent(event), headers: forwarded },
      ]);
    }
    this.metrics.messages.inc({ topic: record.position.topic, outcome: 'dead_lettered' });
    this.metrics.errors.inc({ stage, code });
    log.warn({ code, stage }, 'record dead-lettered');
  }

  /** The lag gauge, and the readiness check's proof that the broker answers. */
  private async updateLag(): Promise<void> {
    try {
      const { topic, groupId } = this.options;
      // The last committed offsets, not stable ones: under load a partition nearly always has a
      // transaction open, and a stable read would wait it out in retries on a libuv worker, the
      // pool the image stages decode on (CommittedOffsets).
      const [ends, committed] = await Promise.all([
        this.admin.fetchTopicOffsets(topic),
        this.admin.fetchOffsets(groupId, topic, { stable: false }),
      ]);
      const committedByPartition = new Map<number, string>();
      for (const p of committed) committedByPartition.set(p.partition, p.offset);
      for (const end of ends) {
        const done = committedByPartition.get(end.partition) ?? '-1';
        const base = Number(done) >= 0 ? Number(done) : Number(end.low);
        const lag = Math.max(0, Number(end.high) - base);
        this.metrics.consumerLag.set({ topic, partition: String(end.partition), group: groupId }, lag);
      }
      this.brokerSeenAt = Date.now();
    } catch (error) {
      this.log.debug({ err: error }, 'consumer lag not updated');
    }
  }
}

const EMPTY = Buffer.alloc(0);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function stageOf(error: unknown): Stage | undefined {
  return error instanceof ThoraxError ? error.options.stage : undefined;
}

function toRecord(topic: string, partition: number, message: KafkaMessage, knownTopic: string): RawRecord {
  return {
    position: {
      // The subscribed topic's string, not a fresh one per record.
      topic: topic === knownTopic ? knownTopic : topic,
      partition,
      offset: message.offset,
      key: message.key ? message.key.toString('utf8') : null,
      timestamp: Number(message.timestamp),
    },
    value: message.value,
    // A record without trace context starts a trace here (ingest, for a PACS that sent none).
    headers: ensureTraceparent(decodeHeaders(message.headers)),
  };
}

function recordLogger(parent: Logger, record: RawRecord): Logger {
  const { topic, partition, offset, key } = record.position;
  return parent.child({
    topic,
    partition,
    offset,
    id: key,
    traceId: parseTraceparent(record.headers[HEADERS.traceparent])?.traceId,
  });
}

/** A batch of one, for a retry; a throw or a malformed answer is that item's failure. */
async function handleAlone<T>(handler: BatchHandler<T>, delivery: Delivery<T>): Promise<ItemResult> {
  try {
    const [result] = await handler.handleBatch([delivery]);
    return result ?? { ok: false, error: new Error('handleBatch answered no result for its one delivery') };
  } catch (error) {
    return { ok: false, error };
  }
}

interface Pending<T> {
  delivery: Delivery<T>;
  resolve: (result: ItemResult) => void;
  /** The transaction the delivery is handled in (exactly-once), carried to the handler's call. */
  transaction: TransactionScope | undefined;
}

/**
 * Gathers the deliveries of concurrently consumed partitions into handleBatch calls: a call goes
 * when maxBatchRecords are waiting or lingerMs after the first one (BatchHandler in consumer-port).
 */
export class BatchCollector<T> {
  private pending: Pending<T>[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly handler: BatchHandler<T>,
    private readonly maxBatchRecords: number,
    private readonly lingerMs: number,
  ) {}

  submit(delivery: Delivery<T>): Promise<ItemResult> {
    return new Promise((resolve) => {
      this.pending.push({ delivery, resolve, transaction: currentTransaction() });
      if (this.pending.length >= this.maxBatchRecords) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.lingerMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending.splice(0, this.maxBatchRecords);
    if (this.pending.length > 0) this.timer = setTimeout(() => this.flush(), 0);
    if (batch.length === 0) return;
    void this.run(batch);
  }

  private async run(batch: Pending<T>[]): Promise<void> {
    let results: readonly ItemResult[];
    try {
      // A call holds one transaction's deliveries (the collectors of exactly-once consumers are
      // per partition and drained before each commit): the handler publishes into it.
      const deliveries = batch.map((p) => p.delivery);
      const transaction = batch[0]?.transaction;
      // A call that resolves keeps what it published (for its ok items), one that throws does not.
      results = await (transaction
        ? inTransaction(transaction, () => tryInTransaction(() => this.handler.handleBatch(deliveries)))
        : this.handler.handleBatch(deliveries));
      if (results.length !== batch.length) {
        throw new Error(`handleBatch answered ${results.length} results for ${batch.length} deliveries`);
      }
    } catch (error) {
      const failed: ItemResult = { ok: false, error };
      for (const p of batch) p.resolve(failed);
      return;
    }
    batch.forEach((p, i) => p.resolve(results[i] ?? { ok: false, error: new Error('no result') }));
  }
}
