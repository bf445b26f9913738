import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { LOGGER, type Logger } from '@thorax/observability';
import { FHIR_OUTBOX, type FhirOutbox } from '../store/results-store.port';
import { FhirTopicPublisher } from './fhir-topic.publisher';

/** Studies published per round at most (the rest wait for the next round). */
const BATCH = 100;

/**
 * Study grouping for the FHIR topic (RESULTS_STUDY_SETTLE_MS): the instances of one study arrive
 * over several requests, associations or batches, and the study's aggregate is recomputed with
 * each. Rather than a bundle per arrival, this publishes a study's current version once no
 * result of it has arrived for the settle time, so the report is complete; a late instance makes
 * a new version, which goes out once the study is quiet again. The store is the outbox (version
 * vs published_version), so a restart or a failed round loses nothing: the next round finds the
 * study still unpublished. At-least-once delivery only (KAFKA_DELIVERY=at-least-once): several
 * replicas may publish one version twice; receivers keep the highest meta.versionId per key, as
 * for any repeat. Under exactly-once delivery FhirOutboxRelay applies the same settle time.
 */
@Injectable()
export class StudySettler implements OnApplicationBootstrap, OnApplicationShutdown {
  private timer: NodeJS.Timeout | null = null;
  private round: Promise<unknown> | null = null;

  constructor(
    private readonly fhirTopic: FhirTopicPublisher,
    @Inject(FHIR_OUTBOX) private readonly outbox: FhirOutbox,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  /** How often the store is asked for settled studies: a fifth of the settle time, 200 ms to 1 s. */
  get pollMs(): number {
    return Math.min(1000, Math.max(200, Math.round(this.fhirTopic.settleMs / 5)));
  }

  onApplicationBootstrap(): void {
    // Under exactly-once delivery FhirOutboxRelay publishes (settled or not) instead.
    if (!this.fhirTopic.settlesHere) return;
    this.log.info({ settleMs: this.fhirTopic.settleMs, pollMs: this.pollMs }, 'study grouping on: FHIR bundles go out once a study is quiet');
    this.timer = setInterval(() => {
      if (this.round === null) this.round = this.publishSettled().finally(() => (this.round = null));
    }, this.pollMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.round;
  }

  /** One round: publishes every settled study (in batches of 100); returns how many went out. */
  async publishSettled(): Promise<number> {
    let total = 0;
    try {
      for (;;) {
        const studies = await this.outbox.settled(this.fhirTopic.settleMs, BATCH);
        if (studies.length === 0) break;
        const published = await this.fhirTopic.publishStudies(studies);
        total += published.length;
        if (studies.length < BATCH || published.length === 0) break;
      }
    } catch (error) {
      this.log.warn({ err: error }, 'publishing settled studies failed; retried next round');
    }
    if (total > 0) this.log.debug({ bundles: total }, 'settled study FHIR bundles published');
    return total;
  }
}
