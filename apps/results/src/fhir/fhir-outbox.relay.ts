import { type BeforeApplicationShutdown, Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { createKafkaClient, type KafkaClientOptions, outboxFailure, TransactionalOutboxPublisher } from '@thorax/kafka';
import { HealthRegistry, healthy, LOGGER, type Logger, ThoraxMetrics, unhealthy } from '@thorax/observability';
import { Counter, Gauge } from 'prom-client';
import { studyResourceId } from '../domain/resource-ids';
import {
  FHIR_OUTBOX,
  FHIR_OUTBOX_CONTROL,
  type FhirOutbox,
  type FhirOutboxControl,
  type OutboxOwnership,
  type StoredStudy,
} from '../store/results-store.port';
import { FHIR_HEADERS, FhirTopicPublisher } from './fhir-topic.publisher';

export const FHIR_TOPIC_WRITER = Symbol('thorax.results.fhir-topic-writer');

/** Study versions per Kafka transaction at most (one store query); the rest go in the next. */
export const RELAY_BATCH = 100;
/**
 * Reconciliation reads the topic from the oldest pending version's store time minus this: room
 * for clock skew between the database server and the results hosts (bundle timestamps).
 */
export const RECONCILE_MARGIN_MS = 5 * 60_000;
/** How often a replica that does not own the outbox tries to take it over, ms. */
export const STANDBY_POLL_MS = 2_000;
/** Readiness turns false when the owner has failed to publish for this long. */
const FAILING_UNREADY_MS = 30_000;

/**
 * The Kafka side of the relay under exactly-once delivery (null otherwise): a transactional
 * producer whose id is fixed per results deployment (`<RESULTS_GROUP_ID>-fhir`).
 */
export function fhirTopicWriter(
  options: KafkaClientOptions,
  spec: { topic: string | null; groupId: string },
  log: Logger,
): TransactionalOutboxPublisher | null {
  if (spec.topic === null || options.delivery !== 'exactly-once') return null;
  const relayLog = log.child({ component: 'fhir-outbox' });
  return new TransactionalOutboxPublisher(
    createKafkaClient(options, relayLog),
    { topic: spec.topic, transactionalId: `${spec.groupId}-fhir` },
    relayLog,
  );
}

type RelayState = 'off' | 'standby' | 'starting' | 'publishing' | 'failing' | 'stopped';

/**
 * Publishes the FHIR topic exactly once per (Study Instance UID, study version) under
 * KAFKA_DELIVERY=exactly-once (docs/fhir.md "Kafka: thorax.fhir.v1"):
 *
 * 1. One replica at a time owns the outbox (FhirOutboxControl.own: a PostgreSQL advisory lock
 *    held by a session of its own; freed when the process dies). The others stand by and retry.
 * 2. The owner starts the producer with the fixed transactional id, which fences any earlier
 *    holder (a zombie that lost the lock but still runs, a killed process's open transaction).
 * 3. It reconciles: reads the topic read_committed from the oldest pending version's store time
 *    (minus RECONCILE_MARGIN_MS) to its end, and marks every pending version found there: what a
 *    previous owner committed but did not live to mark.
 * 4. It publishes: the pending versions settled for RESULTS_STUDY_SETTLE_MS, up to RELAY_BATCH per
 *    Kafka transaction, marked in the store after the commit. A crash between the two leaves
 *    versions committed and unmarked, which step 3 of the next owner finds.
 *
 * Any failure starts over from 1 after a backoff (ownership released, so a healthier replica may
 * take it): a fenced producer (another owner exists), a broker or store failure, a commit whose
 * outcome is unknown. A bundle the topic refuses for good (larger than its max.message.bytes) is
 * skipped, counted and logged by report id, and retried only when its study changes.
 */
@Injectable()
export class FhirOutboxRelay implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private state: RelayState = 'off';
  private failingSince: number | null = null;
  private lastFailure = '';
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wake: () => void = () => undefined;
  private ownership: OutboxOwnership | null = null;
  /** Versions the topic refused: skipped until their study has a newer version. */
  private readonly refused = new Map<string, number>();
  private readonly bundles: Counter<'outcome'>;
  private readonly owner: Gauge<never>;
  private readonly log: Logger;

  constructor(
    private readonly fhirTopic: FhirTopicPublisher,
    @Inject(FHIR_OUTBOX) private readonly outbox: FhirOutbox,
    @Inject(FHIR_OUTBOX_CONTROL) private readonly control: FhirOutboxControl,
    @Inject(FHIR_TOPIC_WRITER) private readonly writer: TransactionalOutboxPublisher | null,
    metrics: ThoraxMetrics,
    health: HealthRegistry,
    @Inject(LOGGER) log: Logger,
  ) {
    this.log = log.child({ component: 'fhir-outbox' });
    this.bundles = new Counter({
      name: 'thorax_fhir_bundles_total',
      help: 'FHIR study bundles of the exactly-once relay, by outcome (published: committed; reconciled: found committed on the topic by a new owner and marked; aborted: in a transaction that failed; refused: too large for the topic).',
      labelNames: ['outcome'],
      registers: [metrics.registry],
    });
    this.owner = new Gauge({
      name: 'thorax_fhir_outbox_owner',
      help: '1 on the results replica that publishes the FHIR topic (exactly-once relay), else 0.',
      registers: [metrics.registry],
    });
    if (this.writer) {
      health.addReadiness('fhir-outbox', () =>
        this.failingSince !== null && Date.now() - this.failingSince >= FAILING_UNREADY_MS
          ? unhealthy(`FHIR topic not published for ${Math.round((Date.now() - this.failingSince) / 1000)} s: ${this.lastFailure}`)
          : healthy,
      );
    }
  }

  /** How often the owner looks for settled versions: as StudySettler, 200 ms to 1 s. */
  get pollMs(): number {
    return Math.min(1000, Math.max(200, Math.round(this.fhirTopic.settleMs / 5)));
  }

  /** What the relay is doing (for tests and logs). */
  get status(): RelayState {
    return this.state;
  }

  onApplicationBootstrap(): void {
    if (!this.writer || !this.fhirTopic.transactional) return;
    this.log.info(
      { topic: this.writer.topic, transactionalId: this.writer.spec.transactionalId, settleMs: this.fhirTopic.settleMs },
      'FHIR topic: exactly-once relay on (one publishing replica at a time)',
    );
    this.loop = this.run();
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.loop;
    this.state = 'stopped';
  }

  private async run(): Promise<void> {
    const writer = this.writer as TransactionalOutboxPublisher;
    for (let failures = 0; !this.stopped; ) {
      try {
        this.ownership = await this.control.own();
        if (!this.ownership) {
          if (this.state !== 'standby') this.log.info('another replica publishes the FHIR topic; standing by');
          this.state = 'standby';
          this.failingSince = null;
          failures = 0;
          await this.pause(STANDBY_POLL_MS);
          continue;
        }
        this.owner.set(1);
        this.state = 'starting';
        await writer.fence();
        const reconciled = await this.reconcile(writer);
        this.log.info({ reconciled }, 'this replica publishes the FHIR topic');
        this.state = 'publishing';
        this.failingSince = null;
        failures = 0;
        await this.publishWhileOwner(writer, this.ownership);
      } catch (error) {
        failures += 1;
        const kind = outboxFailure(error);
        this.state = 'failing';
        this.failingSince ??= Date.now();
        this.lastFailure = (error as Error).message;
        const delayMs = Math.min(30_000, 500 * 2 ** Math.min(failures, 6));
        this.log.warn(
          { err: error, kind, delayMs },
          kind === 'fenced'
            ? 'FHIR outbox producer fenced: another replica took over; giving up ownership'
            : 'FHIR outbox relay failed; giving up ownership, then fencing and reconciling again',
        );
        await this.releaseOwnership(writer);
        await this.pause(delayMs);
        continue;
      }
      await this.releaseOwnership(writer);
    }
    await this.releaseOwnership(writer);
  }

  private async releaseOwnership(writer: TransactionalOutboxPublisher): Promise<void> {
    await writer.close();
    const ownership = this.ownership;
    this.ownership = null;
    this.owner.set(0);
    if (ownership) await ownership.release();
  }

  /**
   * Marks what earlier owners committed but did not mark. Runs after `fence`, so nothing of this
   * transactional id is still open and the topic's end is final for it.
   */
  private async reconcile(writer: TransactionalOutboxPublisher): Promise<number> {
    const oldest = await this.control.oldestUnpublishedAt();
    if (!oldest) return 0;
    const found = new Map<string, number>();
    const started = Date.now();
    const read = await writer.readCommitted(oldest.getTime() - RECONCILE_MARGIN_MS, (record) => {
      const version = Number(record.headers[FHIR_HEADERS.version]);
      if (record.key === null || !Number.isInteger(version) || version < 1) return;
      found.set(record.key, Math.max(version, found.get(record.key) ?? 0));
    });
    const marked = await this.control.markFound([...found].map(([studyUid, version]) => ({ studyUid, version })));
    if (marked > 0) this.bundles.inc({ outcome: 'reconciled' }, marked);
    this.log.info(
      { records: read.records, partitions: read.partitions, studiesOnTopic: found.size, marked, ms: Date.now() - started },
      marked > 0 ? 'FHIR outbox reconciled: versions committed by an earlier owner marked published' : 'FHIR outbox reconciled with the topic',
    );
    return marked;
  }

  private async publishWhileOwner(writer: TransactionalOutboxPublisher, ownership: OutboxOwnership): Promise<void> {
    let lost = false;
    void ownership.lost.then((reason) => {
      lost = true;
      this.log.warn({ err: reason }, 'lost the FHIR outbox ownership (database session gone)');
      this.wake();
    });
    while (!this.stopped && !lost) {
      await this.publishSettled(writer);
      await this.pause(this.pollMs);
    }
    if (lost) throw new Error('FHIR outbox ownership lost');
  }

  /** Publishes every settled pending version, RELAY_BATCH per transaction. Returns how many went out. */
  async publishSettled(writer: TransactionalOutboxPublisher): Promise<number> {
    let total = 0;
    while (!this.stopped) {
      const uids = await this.outbox.settled(this.fhirTopic.settleMs, RELAY_BATCH + this.refused.size);
      const pending = (await this.outbox.unpublished(uids))
        .filter((stored) => this.refused.get(stored.result.studyUid) !== stored.version)
        .slice(0, RELAY_BATCH);
      if (pending.length === 0) break;
      total += await this.publishBatch(writer, pending);
      if (uids.length < RELAY_BATCH + this.refused.size) break;
    }
    return total;
  }

  private async publishBatch(writer: TransactionalOutboxPublisher, pending: readonly StoredStudy[]): Promise<number> {
    const records = this.fhirTopic.bundleRecords(writer.topic, pending);
    try {
      await writer.publish(records);
    } catch (error) {
      this.bundles.inc({ outcome: 'aborted' }, records.length);
      if (outboxFailure(error) !== 'refused') throw error;
      if (pending.length === 1) {
        const stored = pending[0] as StoredStudy;
        this.refused.set(stored.result.studyUid, stored.version);
        this.bundles.inc({ outcome: 'refused' });
        this.log.error(
          { err: error, report: studyResourceId(stored.result.studyUid), version: stored.version, bytes: records[0]?.value.length },
          'the FHIR topic refused a study bundle (larger than its max.message.bytes); skipped until the study changes',
        );
        return 0;
      }
      // One transaction per bundle, so that only the refused one stays behind.
      let published = 0;
      for (const stored of pending) published += await this.publishBatch(writer, [stored]);
      return published;
    }
    // A crash here leaves the versions committed but unmarked: the next owner's reconcile marks them.
    await this.outbox.markPublished(pending.map((stored) => ({ studyUid: stored.result.studyUid, version: stored.version })));
    this.bundles.inc({ outcome: 'published' }, records.length);
    for (const stored of pending) this.refused.delete(stored.result.studyUid);
    return records.length;
  }

  private pause(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}
