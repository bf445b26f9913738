import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type { KafkaClientConfig } from '@thorax/config';
import { type TopicReading, type TopicRecord, TopicTools } from '@thorax/kafka';
import { LOGGER, type Logger } from '@thorax/observability';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';
import type { ModelSelectionSource } from '../model/model.service';
import {
  applyControlRecord,
  type ControlKey,
  controlRecord,
  ControlRecordError,
  type ModelSelection,
  parseControlRecord,
} from './model-selection';

/** Kafka client options of the control topic's reader and writer. */
export const CONTROL_KAFKA_OPTIONS = Symbol('thorax.inference.control-kafka');

/** How this replica fared with one control record. */
export type ApplyOutcome = { ok: true } | { ok: false; error: string };

/**
 * The model selection shared by every inference replica: a compacted control topic
 * (INFERENCE_CONTROL_TOPIC) with one record per setting (primary, canary, shadow). Each replica
 * reads it to the end before loading its first model (so a restart serves what was last chosen,
 * not the INFERENCE_* defaults) and then follows it, applying each change in topic order; the
 * admin API writes to it. Without the topic, a replica serves its defaults and the admin API
 * refuses changes (they could not reach the other replicas or survive a restart).
 */
@Injectable()
export class ModelControlService implements ModelSelectionSource, OnApplicationShutdown {
  private readonly tools: TopicTools;
  private defaults: ModelSelection | null = null;
  private current: ModelSelection | null = null;
  private reading: TopicReading | null = null;
  private caughtUp = false;
  private readonly listeners: ((selection: ModelSelection) => Promise<void>)[] = [];
  /** Outcomes of records applied since start, by "partition:offset" (the last few hundred). */
  private readonly outcomes = new Map<string, ApplyOutcome>();
  private readonly waiters = new Map<string, ((outcome: ApplyOutcome) => void)[]>();
  private lastError: string | null = null;
  private missedChange = false;
  private topicState: 'unknown' | 'available' | 'missing' | 'failed' = 'unknown';

  constructor(
    @Inject(INFERENCE_CONFIG) private readonly config: InferenceConfig,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(CONTROL_KAFKA_OPTIONS) kafka: KafkaClientConfig,
  ) {
    this.tools = TopicTools.connect(kafka, log);
  }

  get topic(): string {
    return this.config.INFERENCE_CONTROL_TOPIC;
  }

  /** Whether changes can be made: the topic exists and this replica has read it to the end. */
  get available(): boolean {
    return this.topicState === 'available' && this.caughtUp;
  }

  get state(): { topic: string; state: string; lastError: string | null; desired: ModelSelection | null } {
    return { topic: this.topic, state: this.topicState, lastError: this.lastError, desired: this.current };
  }

  async initial(defaults: ModelSelection): Promise<ModelSelection> {
    this.defaults = defaults;
    this.current = defaults;
    try {
      if (!(await this.tools.topicExists(this.topic))) {
        this.topicState = 'missing';
        this.log.warn(
          { topic: this.topic },
          'model control topic missing: serving the INFERENCE_* defaults, and the admin API cannot change models (create it with `thorax topics`)',
        );
        return defaults;
      }
      let caughtUp!: () => void;
      const ready = new Promise<void>((resolve) => (caughtUp = resolve));
      this.reading = await this.tools.read(
        this.topic,
        { from: 'earliest', until: 'never', groupPrefix: 'thorax-inference-control', onCaughtUp: () => caughtUp() },
        (record) => this.onRecord(record),
      );
      this.reading.done.catch((error: unknown) => {
        this.topicState = 'failed';
        this.lastError = `control topic reader stopped: ${(error as Error).message}`;
        this.log.error({ err: error, topic: this.topic }, 'model control topic reader stopped; admin changes are refused until restart');
      });
      await withTimeout(ready, this.config.INFERENCE_CONTROL_TIMEOUT_MS, `reading ${this.topic} to its end`);
      this.caughtUp = true;
      this.topicState = 'available';
      this.log.info({ topic: this.topic, selection: this.current }, 'model selection read from the control topic');
      return this.current;
    } catch (error) {
      this.topicState = 'failed';
      this.lastError = (error as Error).message;
      this.log.error({ err: error, topic: this.topic }, 'model control topic unreadable: serving the INFERENCE_* defaults');
      await this.reading?.stop();
      return defaults;
    }
  }

  onChange(listener: (selection: ModelSelection) => Promise<void>): void {
    this.listeners.push(listener);
    // A change that arrived while the first models were loading is applied now.
    if (this.missedChange && this.current) {
      this.missedChange = false;
      void listener(this.current).catch((error: unknown) =>
        this.log.error({ err: error, topic: this.topic }, 'model control change failed to load; the versions served before keep serving'),
      );
    }
  }

  /**
   * Writes one setting of `next` to the control topic and resolves with how this replica applied
   * it (every replica applies it in topic order, this one included).
   */
  async change(key: ControlKey, next: ModelSelection, by: string | null): Promise<{ outcome: ApplyOutcome; position: string }> {
    const [position] = await this.tools.send([
      { topic: this.topic, key, value: Buffer.from(JSON.stringify(controlRecord(key, next, by))) },
    ]);
    if (!position) throw new Error('the control record was not acknowledged');
    const id = `${position.partition}:${position.offset}`;
    const outcome = await withTimeout(this.outcomeOf(id), this.config.INFERENCE_CONTROL_TIMEOUT_MS, `applying control record ${id}`);
    return { outcome, position: id };
  }

  private outcomeOf(id: string): Promise<ApplyOutcome> {
    const known = this.outcomes.get(id);
    if (known) return Promise.resolve(known);
    return new Promise((resolve) => this.waiters.set(id, [...(this.waiters.get(id) ?? []), resolve]));
  }

  private async onRecord(record: TopicRecord): Promise<void> {
    const id = `${record.partition}:${record.offset}`;
    let outcome: ApplyOutcome = { ok: true };
    try {
      const { key, record: value } = parseControlRecord(record.key, record.value);
      const next = applyControlRecord(this.current ?? (this.defaults as ModelSelection), this.defaults as ModelSelection, key, value);
      this.current = next;
      if (this.caughtUp) {
        this.log.info({ topic: this.topic, offset: record.offset, key, version: value?.version ?? null, by: value?.by ?? null }, 'model control change');
        if (this.listeners.length === 0) this.missedChange = true;
        for (const listener of this.listeners) await listener(next);
      }
    } catch (error) {
      const message = (error as Error).message;
      outcome = { ok: false, error: message };
      if (error instanceof ControlRecordError) this.log.warn({ topic: this.topic, offset: record.offset, err: error }, 'control record ignored');
      else {
        this.lastError = message;
        this.log.error({ topic: this.topic, offset: record.offset, err: error }, 'model control change failed to load; the versions served before keep serving');
      }
    }
    this.outcomes.set(id, outcome);
    if (this.outcomes.size > 500) this.outcomes.delete(this.outcomes.keys().next().value as string);
    for (const resolve of this.waiters.get(id) ?? []) resolve(outcome);
    this.waiters.delete(id);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.reading?.stop();
    await this.tools.disconnect();
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
