import { HEADERS, type Stage, ThoraxError } from '@thorax/contracts';
import { type Logger, parseTraceparent, type ThoraxMetrics } from '@thorax/observability';
import type { BatchHandler, Consumption, ConsumerSpec, Delivery, MessageHandler, RecordPosition } from './consumer-port';
import { isKafkaClientError } from './kafka-errors';
import type { RecordHandling } from './record-consumer';
import { forwardedHeaders, type OutgoingRecord, type Publisher, type PublishOptions } from './records';

/**
 * In-process hand-off of records between stages that run in one process (the co-located small-site
 * deployment, docs/operations.md "Co-located stages"; `thorax pipeline` installs the topics).
 *
 * A record published to a local topic is not sent to Kafka: it is decoded and handed to the handler
 * that the consuming stage registered for that topic in this process, and the publish resolves
 * only when that handler has finished, including everything it published in turn. So the first
 * stage's Kafka consumer commits its input offset only after the last stage's output is
 * acknowledged by Kafka: at-least-once end to end, as with separate processes, with one Kafka hop
 * instead of three.
 *
 * Failures travel back up instead of being dead-lettered in between: the publish rejects with the
 * handler's error, stamped with the stage that failed, and the first stage's consumer gives it its
 * outcome (retry, dead-letter of the original input with the failing stage named, or redelivery
 * for a broker failure). A dead-lettered input is therefore the record that entered the process,
 * which is what a replay needs.
 */
export class LocalTopics {
  private readonly routes = new Map<string, LocalRoute>();
  private readonly waiting = new Map<string, (() => void)[]>();

  constructor(
    readonly topics: ReadonlySet<string>,
    private readonly registrationTimeoutMs = 60_000,
  ) {}

  isLocal(topic: string): boolean {
    return this.topics.has(topic);
  }

  /** The consuming stage's side: records of `spec.topic` published in this process go to `handling`. */
  register<T>(spec: ConsumerSpec<T>, handling: RecordHandling<T>, metrics: ThoraxMetrics, log: Logger): Consumption {
    if (!this.isLocal(spec.topic)) throw new Error(`${spec.topic} is not a local topic`);
    if (this.routes.has(spec.topic)) throw new Error(`${spec.topic} already has a local consumer in this process`);
    const route = new LocalRoute(spec as ConsumerSpec<unknown>, handling as RecordHandling<unknown>, metrics, log);
    this.routes.set(spec.topic, route);
    for (const wake of this.waiting.get(spec.topic) ?? []) wake();
    this.waiting.delete(spec.topic);
    log.info({ topic: spec.topic, stage: spec.stage }, 'consuming a local topic (in-process hand-off)');
    return { pause: () => route.pause(), resume: () => route.resume() };
  }

  /** The producing stage's side: hands the records to their consumer; resolves when all are handled. */
  async deliver(records: readonly OutgoingRecord[]): Promise<void> {
    await Promise.all(records.map(async (record) => (await this.route(record.topic)).deliver(record)));
  }

  private async route(topic: string): Promise<LocalRoute> {
    const found = this.routes.get(topic);
    if (found) return found;
    // The consuming stage starts beside this one and may not have registered yet.
    const registered = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.registrationTimeoutMs);
      timer.unref();
      const list = this.waiting.get(topic) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
      this.waiting.set(topic, list);
    });
    if (!(await registered)) {
      throw new ThoraxError('INTERNAL_ERROR', `no stage in this process consumes the local topic ${topic}`, { redeliver: true });
    }
    const route = this.routes.get(topic);
    if (!route) throw new Error(`local topic ${topic}: woken without a consumer`);
    return route;
  }
}

/** A Publisher that hands records of local topics to LocalTopics and sends the rest to Kafka. */
export class RoutingPublisher implements Publisher {
  constructor(
    private readonly local: LocalTopics,
    private readonly kafka: Publisher,
  ) {}

  async publish(records: OutgoingRecord[], options?: PublishOptions): Promise<void> {
    const local: OutgoingRecord[] = [];
    const remote: OutgoingRecord[] = [];
    for (const record of records) (this.local.isLocal(record.topic) ? local : remote).push(record);
    if (local.length === 0) return this.kafka.publish(remote, options);
    await Promise.all([
      this.local.deliver(local),
      remote.length > 0 ? this.kafka.publish(remote, options) : Promise.resolve(),
    ]);
  }
}

/** One local topic's consumer: decode, a Delivery like the Kafka consumer's, the handler. */
class LocalRoute {
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;
  private sequence = 0;

  constructor(
    private readonly spec: ConsumerSpec<unknown>,
    private readonly handling: RecordHandling<unknown>,
    private readonly metrics: ThoraxMetrics,
    private readonly log: Logger,
  ) {}

  /** Backpressure from the consuming stage: new hand-offs wait until it resumes. */
  pause(): void {
    this.gate ??= new Promise((resolve) => (this.open = resolve));
  }

  resume(): void {
    const open = this.open;
    this.gate = null;
    this.open = null;
    open?.();
  }

  async deliver(record: OutgoingRecord): Promise<void> {
    while (this.gate) await this.gate;
    const { spec } = this;
    const headers = record.headers ?? {};
    const position: RecordPosition = {
      topic: spec.topic,
      partition: -1,
      offset: `local-${++this.sequence}`,
      key: record.key,
      timestamp: Date.now(),
    };
    try {
      // The producing stage's own message when it kept one (encodedRecord): nothing to decode.
      const message = record.message !== undefined ? record.message : spec.decode(record.value, headers);
      const delivery = this.delivery(message, headers, position);
      if (this.handling.kind === 'single') {
        await (this.handling.handler as MessageHandler<unknown>).handle(delivery);
      } else {
        const [result] = await (this.handling.handler as BatchHandler<unknown>).handleBatch([delivery]);
        if (!result) throw new Error('handleBatch answered no result for its one delivery');
        if (!result.ok) throw result.error;
      }
      this.metrics.messages.inc({ topic: spec.topic, outcome: 'ok' });
    } catch (error) {
      // Its outcome (retried, dead-lettered, redelivered) is counted by the consumer upstream.
      throw stamped(error, spec.stage);
    }
  }

  private delivery(message: unknown, headers: Record<string, string>, position: RecordPosition): Delivery<unknown> {
    const parent = this.log;
    let log: Logger | null = null;
    return {
      message,
      forward: forwardedHeaders(headers),
      headers,
      position,
      get log() {
        return (log ??= parent.child({
          topic: position.topic,
          offset: position.offset,
          id: position.key,
          traceId: parseTraceparent(headers[HEADERS.traceparent])?.traceId,
        }));
      },
    };
  }
}

/**
 * The error as the producing stage's consumer should classify it: broker failures unchanged (the
 * input is redelivered), a ThoraxError with the failing stage named, anything else a transient
 * INTERNAL_ERROR of that stage (retried, then dead-lettered) as the stage's own consumer would.
 */
export function stamped(error: unknown, stage: Stage): unknown {
  if (isKafkaClientError(error)) return error;
  if (error instanceof ThoraxError) {
    return error.options.stage ? error : new ThoraxError(error.code, error.message, { ...error.options, stage });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ThoraxError('INTERNAL_ERROR', message, { stage, transient: true, cause: error });
}

const PROCESS_LOCAL_TOPICS = Symbol.for('thorax.kafka.local-topics');

/**
 * Makes `topics` local for every stage started in this process from now on (the co-located
 * launcher calls it before it launches the stages; each stage builds its own KafkaModule, which
 * picks it up through processLocalTopics). Installing twice with other topics is an error.
 */
export function installLocalTopics(topics: readonly string[]): LocalTopics {
  const holder = globalThis as { [PROCESS_LOCAL_TOPICS]?: LocalTopics };
  const existing = holder[PROCESS_LOCAL_TOPICS];
  const wanted = new Set(topics);
  if (existing) {
    const same = existing.topics.size === wanted.size && [...wanted].every((t) => existing.topics.has(t));
    if (!same) throw new Error(`local topics already installed as ${[...existing.topics].join(',')}, not ${topics.join(',')}`);
    return existing;
  }
  const created = new LocalTopics(wanted);
  holder[PROCESS_LOCAL_TOPICS] = created;
  return created;
}

/** The process's installed LocalTopics (co-located stages), else null (everything via Kafka). */
export function processLocalTopics(): LocalTopics | null {
  return (globalThis as { [PROCESS_LOCAL_TOPICS]?: LocalTopics })[PROCESS_LOCAL_TOPICS] ?? null;
}
