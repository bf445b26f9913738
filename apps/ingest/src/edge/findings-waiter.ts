import { type BeforeApplicationShutdown, Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { decodeFindingsEvent, type FindingsEvent } from '@thorax/contracts';
import type { FollowedRecord, TopicFollower } from '@thorax/kafka';
import { LOGGER, type Logger } from '@thorax/observability';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { EdgeError } from './edge-error';

/** Nest token of the TopicFollower on thorax.findings.v1 (a group of this process alone). */
export const FINDINGS_FOLLOWER = Symbol('thorax.ingest.findings-follower');

/** A registered wait: `result` settles with the image's findings event, or a PREDICT_TIMEOUT EdgeError. */
export interface FindingsWait {
  result: Promise<FindingsEvent>;
  cancel(): void;
}

/**
 * Correlates synchronous predict calls with the pipeline's output: it follows every partition of
 * thorax.findings.v1 from its end (read_committed, a consumer group of this ingest instance alone,
 * no offsets committed) and settles each wait with the first event of its image id. The image
 * itself goes through Kafka like any other (InstanceSubmitter): nothing bypasses the pipeline.
 *
 * Waits are registered before the image is submitted, so a fast result is never missed; at most
 * INGEST_PREDICT_MAX_WAITS at once (TOO_MANY_REQUESTS beyond), none while the follower is not
 * positioned on the topic (UNAVAILABLE).
 */
@Injectable()
export class FindingsWaiter implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly waits = new Map<string, Set<(event: FindingsEvent) => void>>();
  private count = 0;
  readonly groupId: string;

  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    @Inject(FINDINGS_FOLLOWER) private readonly follower: TopicFollower,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.groupId = `${config.INGEST_GROUP_ID}.predict.${hostname()}.${process.pid}.${randomBytes(3).toString('hex')}`;
  }

  onApplicationBootstrap(): void {
    void this.follower.start({ topic: this.config.TOPIC_FINDINGS, groupId: this.groupId }, (record) => this.onRecord(record));
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.follower.stop();
  }

  get ready(): boolean {
    return this.follower.ready;
  }

  /** Waits currently registered. */
  get waiting(): number {
    return this.count;
  }

  /** Registers a wait for `id`'s findings event; call before submitting the image. */
  wait(id: string, timeoutMs: number): FindingsWait {
    if (!this.follower.ready) throw new EdgeError('UNAVAILABLE', 'predict is not available yet: the findings topic is not followed');
    if (this.count >= this.config.INGEST_PREDICT_MAX_WAITS) {
      throw new EdgeError('TOO_MANY_REQUESTS', `${this.count} predict calls are waiting already (INGEST_PREDICT_MAX_WAITS)`);
    }
    let settle: (event: FindingsEvent) => void = () => undefined;
    let timer: NodeJS.Timeout | undefined;
    const result = new Promise<FindingsEvent>((resolve, reject) => {
      settle = (event) => {
        done();
        resolve(event);
      };
      timer = setTimeout(() => {
        done();
        reject(new EdgeError('PREDICT_TIMEOUT', `no findings for ${id} within ${timeoutMs} ms; the image was accepted and its result will still be stored`));
      }, timeoutMs);
    });
    const done = () => {
      clearTimeout(timer);
      const set = this.waits.get(id);
      if (set?.delete(settle)) this.count -= 1;
      if (set?.size === 0) this.waits.delete(id);
    };
    let set = this.waits.get(id);
    if (!set) this.waits.set(id, (set = new Set()));
    set.add(settle);
    this.count += 1;
    // A caller that stopped listening (its upload failed) leaves no unhandled rejection behind.
    result.catch(() => undefined);
    return { result, cancel: done };
  }

  private onRecord(record: FollowedRecord): void {
    if (record.key === null) return;
    const set = this.waits.get(record.key);
    if (!set) return;
    let event: FindingsEvent;
    try {
      event = decodeFindingsEvent(record.value);
    } catch (error) {
      this.log.warn({ err: error, id: record.key }, 'findings record for a waiting predict call does not match the schema');
      return;
    }
    if (event.id !== record.key) return;
    for (const settle of [...set]) settle(event);
  }
}
