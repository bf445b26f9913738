import { Inject, Injectable } from '@nestjs/common';
import { encodeFeedbackEvent, type FeedbackEvent } from '@thorax/contracts';
import { type OutgoingRecord, PUBLISHER, type Publisher } from '@thorax/kafka';
import { FEEDBACK_STORE, type FeedbackStore } from '../store/results-store.port';

export interface FeedbackTopicOptions {
  /** thorax.feedback.v1 unless RESULTS_FEEDBACK_TOPIC renames it. */
  topic: string;
}

export const FEEDBACK_TOPIC_OPTIONS = Symbol('thorax.results.feedback-topic-options');

/** Kafka headers of a feedback record. */
export const FEEDBACK_HEADERS = { contentType: 'content-type', revision: 'thorax-feedback-revision' } as const;

/**
 * Sends verdicts to the feedback topic with the store as the outbox (as FhirTopicPublisher does
 * for study bundles): a revision is marked published only after Kafka acknowledged it, so a crash
 * or a broker outage between storing and publishing sends it later (at least once; receivers
 * keep the highest revision per id, model version, label and reviewer).
 */
@Injectable()
export class FeedbackTopicPublisher {
  constructor(
    @Inject(FEEDBACK_TOPIC_OPTIONS) private readonly options: FeedbackTopicOptions,
    @Inject(FEEDBACK_STORE) private readonly store: FeedbackStore,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
  ) {}

  /** Publishes the events in one Kafka request and marks them published once acknowledged. */
  async publish(events: readonly FeedbackEvent[]): Promise<void> {
    if (events.length === 0) return;
    const records: OutgoingRecord[] = events.map((event) => ({
      topic: this.options.topic,
      key: event.id,
      value: encodeFeedbackEvent(event),
      headers: { [FEEDBACK_HEADERS.contentType]: 'application/json', [FEEDBACK_HEADERS.revision]: String(event.revision) },
    }));
    await this.publisher.publish(records);
    await this.store.markPublished(events);
  }

  /** Publishes up to `limit` verdicts whose current revision has not gone out; returns how many went. */
  async publishPending(limit: number): Promise<number> {
    const pending = await this.store.unpublished(limit);
    await this.publish(pending.map((p) => p.event));
    return pending.length;
  }
}
