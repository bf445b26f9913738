import { Inject, Injectable } from '@nestjs/common';
import { ThoraxError } from '@thorax/contracts';
import { type DeliveryMode, type OutgoingRecord, PUBLISHER, type Publisher, whenCommitted } from '@thorax/kafka';
import { FHIR_OUTBOX, type FhirOutbox, type StoredStudy } from '../store/results-store.port';
import { studyBundle, studyResources } from './fhir-resources';
import { FHIR_OPTIONS, type FhirOptions } from './fhir.service';

export interface FhirTopicOptions {
  /** The topic of study bundles (thorax.fhir.v1); null: not published. */
  topic: string | null;
  /**
   * Study grouping (RESULTS_STUDY_SETTLE_MS): a study's bundle goes out once no result of it has
   * arrived for this long (StudySettler), and again after a late one. 0 or absent: with every
   * stored batch, as the results arrive.
   */
  settleMs?: number;
  /**
   * KAFKA_DELIVERY (the service passes it). exactly-once: bundles go out only through
   * FhirOutboxRelay, one publisher at a time in Kafka transactions, each (study, version) once.
   * at-least-once or absent: with each stored batch (settle time 0) or from StudySettler, and a
   * crash between Kafka's acknowledgement and the store's mark publishes a version twice.
   */
  delivery?: DeliveryMode;
}

export const FHIR_TOPIC_OPTIONS = Symbol('thorax.results.fhir-topic-options');

/** Kafka headers of a bundle record. */
export const FHIR_HEADERS = { contentType: 'content-type', version: 'thorax-fhir-version' } as const;

/**
 * Builds each new version of a study's FHIR resources as a transaction Bundle record, keyed by
 * the Study Instance UID, and, under at-least-once delivery, publishes it. The store is the
 * outbox: a version is marked published only after Kafka acknowledged it, so a crash or a broker
 * outage republishes and a redelivered event publishes nothing new. The repeat left at least
 * once: a crash between the acknowledgement and the store's mark publishes that version again.
 * Under exactly-once delivery FhirOutboxRelay publishes instead, and that repeat is gone
 * (docs/fhir.md "Kafka: thorax.fhir.v1"). Receivers keep the highest meta.versionId per key.
 */
@Injectable()
export class FhirTopicPublisher {
  /** Versions published but not yet marked (their transaction is open): not published twice meanwhile. */
  private readonly inFlight = new Set<string>();

  constructor(
    @Inject(FHIR_TOPIC_OPTIONS) private readonly options: FhirTopicOptions,
    @Inject(FHIR_OPTIONS) private readonly fhir: FhirOptions,
    @Inject(FHIR_OUTBOX) private readonly outbox: FhirOutbox,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
  ) {}

  get enabled(): boolean {
    return this.options.topic !== null;
  }

  /** Bundles go out exactly once, through the transactional relay (FhirOutboxRelay). */
  get transactional(): boolean {
    return this.enabled && this.options.delivery === 'exactly-once';
  }

  /** The topic of the bundles (null: not published). */
  get topic(): string | null {
    return this.options.topic;
  }

  /** At-least-once: bundles go out with each stored batch (no study grouping). */
  get publishesOnStore(): boolean {
    return this.enabled && !this.transactional && !(this.options.settleMs && this.options.settleMs > 0);
  }

  /** At-least-once with study grouping: StudySettler publishes. */
  get settlesHere(): boolean {
    return this.enabled && !this.transactional && this.settleMs > 0;
  }

  /** The settle time of study grouping, ms (0: none). */
  get settleMs(): number {
    return this.options.settleMs ?? 0;
  }

  /**
   * Publishes the current version of each of the studies unless it already went out, in one
   * Kafka request; resolves once Kafka acknowledged them and they are marked published. Returns
   * what went out.
   */
  async publishStudies(studyUids: readonly string[]): Promise<{ studyUid: string; version: number }[]> {
    const topic = this.options.topic;
    if (topic === null || studyUids.length === 0) return [];
    const pending = (await this.outbox.unpublished([...new Set(studyUids)])).filter(
      (stored) => !this.inFlight.has(versionKey(stored.result.studyUid, stored.version)),
    );
    if (pending.length === 0) return [];
    const keys = pending.map((stored) => versionKey(stored.result.studyUid, stored.version));
    for (const key of keys) this.inFlight.add(key);
    const settle = () => keys.forEach((key) => this.inFlight.delete(key));
    const records = this.bundleRecords(topic, pending);
    try {
      await this.publisher.publish(records);
    } catch (error) {
      settle();
      // A broker's refusal of a bundle (too large) stays visible through `cause` (see the failure policy).
      throw new ThoraxError('INTERNAL_ERROR', `publishing FHIR bundles failed: ${(error as Error).message}`, {
        stage: 'results',
        redeliver: true,
        cause: error,
      });
    }
    const published = pending.map((stored) => ({ studyUid: stored.result.studyUid, version: stored.version }));
    // Marked only once Kafka holds them: with exactly-once delivery after the transaction they
    // joined commits (never if it aborts: the redelivered records publish them again).
    await whenCommitted(
      () => this.outbox.markPublished(published).finally(settle),
      settle,
    );
    return published;
  }

  /** The topic records of stored study versions: a transaction Bundle each, keyed by Study Instance UID. */
  bundleRecords(topic: string, studies: readonly StoredStudy[]): OutgoingRecord[] {
    return studies.map((stored) => ({
      topic,
      key: stored.result.studyUid,
      value: Buffer.from(JSON.stringify(studyBundle(studyResources(stored, this.fhir), this.fhir.baseUrl)), 'utf8'),
      headers: { [FHIR_HEADERS.contentType]: 'application/fhir+json', [FHIR_HEADERS.version]: String(stored.version) },
    }));
  }
}

function versionKey(studyUid: string, version: number): string {
  return `${version}:${studyUid}`;
}
