import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { LOGGER, type Logger } from '@thorax/observability';
import { FeedbackTopicPublisher } from './feedback-topic.publisher';

export interface FeedbackRelayOptions {
  /** Interval between sweeps of unpublished verdicts, ms. */
  intervalMs: number;
  /**
   * Only revisions stored at least this long ago, ms (default 10 s): a fresh one is being
   * published by the request that stored it, here or on another replica.
   */
  settledMs?: number;
}

export const FEEDBACK_RELAY_OPTIONS = Symbol('thorax.results.feedback-relay-options');

const SWEEP_LIMIT = 500;
const DEFAULT_SETTLED_MS = 10_000;

/**
 * The outbox relay of the feedback topic: at start and then every RESULTS_FEEDBACK_RELAY_MS, sends
 * the verdicts that were stored but never acknowledged by Kafka (a broker outage during the POST,
 * or a crash between the two). One sweep at a time; stops before the Kafka client closes.
 */
@Injectable()
export class FeedbackRelay implements OnApplicationBootstrap, OnApplicationShutdown {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly publisher: FeedbackTopicPublisher,
    @Inject(FEEDBACK_RELAY_OPTIONS) private readonly options: FeedbackRelayOptions,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  onApplicationBootstrap(): void {
    this.schedule(0);
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One sweep (tests call it directly): every pending verdict, in chunks. Returns how many went. */
  async sweep(): Promise<number> {
    let sent = 0;
    for (;;) {
      const n = await this.publisher.publishPending(SWEEP_LIMIT, this.options.settledMs ?? DEFAULT_SETTLED_MS);
      sent += n;
      if (n < SWEEP_LIMIT || this.stopped) return sent;
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.sweep()
        .then((sent) => {
          if (sent > 0) this.log.info({ sent }, 'feedback relay: pending verdicts published');
        })
        .catch((error: unknown) => this.log.warn({ err: error }, 'feedback relay: publishing pending verdicts failed; retried later'))
        .finally(() => {
          this.running = null;
          this.schedule(this.options.intervalMs);
        });
    }, delayMs);
    this.timer.unref();
  }
}
