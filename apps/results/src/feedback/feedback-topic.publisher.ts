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

  /** Revisions being published by this process right now (id, model version, label, reviewer, revision). */
  private readonly inFlight = new Set<string>();

  /**
   * Publishes the events in one Kafka request and marks them published once acknowledged. A
   * revision this process is already publishing is left to that call (no second copy).
   */
  async publish(events: readonly FeedbackEvent[]): Promise<void> {
    const mine = events.filter((e) => !this.inFlight.has(flightKey(e)));
    if (mine.length === 0) return;
    for (const e of mine) this.inFlight.add(flightKey(e));
    try {
      await this.send(mine);
    } finally {
      for (const e of mine) this.inFlight.delete(flightKey(e));
    }
  }

  private async send(events: readonly FeedbackEvent[]): Promise<void> {
    const records: OutgoingRecord[] = events.map((event) => ({
      topic: this.options.topic,
      key: event.id,
      value: encodeFeedbackEvent(event),
      headers: { [FEEDBACK_HEADERS.contentType]: 'application/json', [FEEDBACK_HEADERS.revision]: String(event.revision) },
    }));
    await this.publisher.publish(records);
    await this.store.markPublished(events);
  }

  /**
   * Publishes up to `limit` verdicts whose current revision has not gone out and that changed at
   * least `settledMs` ago; returns how many it found.
   */
  async publishPending(limit: number, settledMs: number): Promise<number> {
    const pending = await this.store.unpublished(limit, settledMs);
    await this.publish(pending.map((p) => p.event));
    return pending.length;
  }
}

const flightKey = (e: FeedbackEvent): string => JSON.stringify([e.id, e.model.version, e.label, e.reviewer, e.revision]);
