import {
  type BeforeApplicationShutdown,
  type DynamicModule,
  Global,
  Inject,
  Injectable,
  Module,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { HealthRegistry, healthy, LOGGER, type Logger, ThoraxMetrics, unhealthy } from '@thorax/observability';
import { type ClientProducer, createClient, type KafkaClient } from './client-port';
import { classifyKafkaFailure, classifySocketError, type KafkaFailure } from './connection-failure';
import type { KafkaClientOptions } from './kafka-client';
import { KafkaPublisher } from './kafka-publisher';
import {
  type BatchConsumerSpec,
  type BatchHandler,
  type Consumption,
  CONSUMERS,
  type ConsumerPort,
  type ConsumerSpec,
  type MessageHandler,
} from './consumer-port';
import { type LocalTopics, processLocalTopics, RoutingPublisher } from './local-topics';
import { RecordConsumer, type RecordHandling } from './record-consumer';
import { PUBLISHER, type Publisher } from './records';

export type KafkaModuleOptions = KafkaClientOptions;

const KAFKA_OPTIONS = Symbol('thorax.kafka.options');

/** Exit status when authentication or TLS kept failing (EX_CONFIG of sysexits.h). */
export const EXIT_KAFKA_CONFIG = 78;

/** Connect retry backoff: 1 s doubling to 30 s, ±20 % jitter. */
export function connectBackoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/**
 * Owns the service's Kafka client: one producer (acks from all in-sync replicas; idempotent
 * unless KAFKA_PRODUCER_IDEMPOTENT=false) and the consumers the app creates.
 *
 * Start-up never blocks on the broker: the HTTP server comes up, the producer connects in the
 * background with backoff, and `/readyz` says why it is not connected yet
 * (`kafka: authentication failed (SCRAM-SHA-512)`, `kafka: TLS handshake failed (…)`,
 * `kafka: brokers unreachable (…)`). An authentication, authorization or TLS failure is logged
 * once as an error naming the variables to check; consumers start only once the producer is
 * connected. When such a failure lasts KAFKA_AUTH_FAILURE_EXIT_MS the process exits (status 78)
 * so its supervisor restarts it with the current secrets.
 *
 * Idempotence with kafkajs 2.2.4 (marked experimental there): its sequence numbers are assigned
 * per request and rolled back when a request fails, so two requests in flight could reuse a
 * number and the broker would drop the second as a duplicate. Hence one request in flight per
 * service (the publisher is serial, maxInFlightRequests 1) and, after a send that gave up, a
 * fresh producer (new producer id) before the next send. Retried requests within one send keep
 * their sequence numbers, which is what lets the broker discard the copies a broker failover or
 * a lost response would otherwise duplicate.
 * With KAFKA_CLIENT=librdkafka none of that is needed: librdkafka's idempotent producer keeps
 * up to 5 requests in flight with exact sequence numbers and retries, so the publisher is not
 * serial and the producer is never replaced.
 *
 * Delivery (KAFKA_DELIVERY): exactly-once by default, where each consumer commits a fetch's
 * outputs and input offsets in Kafka transactions of its own per-partition producers
 * (RecordConsumer) and this producer serves only publishes outside a handled record;
 * at-least-once publishes through this producer and commits offsets afterwards.
 *
 * It is the app's ConsumerPort (token CONSUMERS): a consumer asked for starts once the producer
 * is connected. On shutdown the consumers drain and commit first, then the producer disconnects.
 */
@Injectable()
export class KafkaConnection implements ConsumerPort, OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly kafka: KafkaClient;
  readonly publisher: KafkaPublisher;
  /** The port the app publishes through: local topics in process, the rest to Kafka. */
  readonly port: Publisher;
  private readonly local: LocalTopics | null;
  private producer: ClientProducer;
  private connected = false;
  private closed = false;
  private failure: KafkaFailure | null = null;
  /** Since when authentication/TLS has been failing without a success in between. */
  private failingSince: number | null = null;
  private readonly logged = new Set<string>();
  private readonly consumers: RecordConsumer<unknown>[] = [];
  private readonly idempotent: boolean;
  private readonly connectedOnce: Promise<void>;
  private markConnected: () => void = () => undefined;

  constructor(
    @Inject(KAFKA_OPTIONS) private readonly options: KafkaModuleOptions,
    @Inject(LOGGER) private readonly log: Logger,
    private readonly metrics: ThoraxMetrics,
    private readonly health: HealthRegistry,
  ) {
    this.idempotent = options.idempotentProducer ?? true;
    this.connectedOnce = new Promise((resolve) => (this.markConnected = resolve));
    this.kafka = createClient(options, log, {
      onSocketError: (error, broker) => {
        const failure = classifySocketError(error, options);
        if (failure) this.noteFailure(failure, { broker });
      },
    });
    this.producer = this.newProducer();
    // kafkajs's idempotent producer needs one request in flight and a fresh producer after a
    // failed send (see above); librdkafka's keeps its sequence numbers exact by itself.
    const serial = this.idempotent && this.kafka.kind === 'kafkajs';
    this.publisher = new KafkaPublisher(this.producer, {
      lingerMs: 2,
      maxBatchRecords: 500,
      serial,
      afterFailure: serial ? (error) => this.renewProducer(error) : undefined,
    });
    // Set when this process co-locates stages (`thorax pipeline` installs the local topics).
    this.local = processLocalTopics();
    this.port = this.local ? new RoutingPublisher(this.local, this.publisher) : this.publisher;
    health.addReadiness('kafka-producer', () =>
      this.connected ? healthy : unhealthy(this.failure?.reason ?? 'kafka: connecting'),
    );
  }

  /** Starts connecting in the background; readiness reports the outcome. */
  onModuleInit(): void {
    void this.connectUntilDone();
  }

  consume<T>(spec: ConsumerSpec<T>, handler: MessageHandler<T>): Consumption {
    return this.startConsumer(spec, { kind: 'single', handler });
  }

  consumeBatches<T>(spec: BatchConsumerSpec<T>, handler: BatchHandler<T>): Consumption {
    return this.startConsumer(spec, { kind: 'batch', handler });
  }

  /**
   * Creates the consumer and returns at once; it really starts once the producer is connected
   * (retried with backoff if it fails, e.g. a topic not provisioned yet).
   */
  private startConsumer<T>(spec: ConsumerSpec<T>, handling: RecordHandling<T>): Consumption {
    const log = this.log.child({ component: 'consumer', group: spec.groupId });
    if (this.local?.isLocal(spec.topic)) return this.local.register(spec, handling, this.metrics, log);
    const delivery = this.options.delivery ?? 'exactly-once';
    const consumer = new RecordConsumer(this.kafka, spec, handling, this.publisher, this.metrics, this.health, log, delivery);
    this.consumers.push(consumer as RecordConsumer<unknown>);
    void this.startWhenConnected(() => consumer.start(), spec, log);
    return { pause: () => consumer.pause(), resume: () => consumer.resume() };
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.closed = true;
    await Promise.all(this.consumers.map((c) => c.stop()));
  }

  async onApplicationShutdown(): Promise<void> {
    this.closed = true;
    await this.producer.disconnect();
    this.log.info('kafka producer disconnected');
  }

  private newProducer(): ClientProducer {
    const producer: ClientProducer = this.kafka.producer(
      {
        idempotent: this.idempotent,
        // kafkajs serialises an idempotent producer's requests per broker anyway; one in flight
        // keeps ordering under retries for the non-idempotent mode too.
        maxInFlightRequests: this.idempotent ? 1 : 5,
        retries: 10,
      },
      {
        onConnection: (connected) => {
          if (producer === this.producer) this.connected = connected;
        },
      },
    );
    return producer;
  }

  private async connectUntilDone(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      if (await this.connectOnce()) return;
      await sleep(connectBackoffMs(attempt));
    }
  }

  private async connectOnce(): Promise<boolean> {
    const producer = this.producer;
    try {
      await producer.connect();
      if (producer !== this.producer) return false;
      if (this.failure) this.log.info({ after: this.failure.reason }, 'kafka connection established after failures');
      this.failure = null;
      this.failingSince = null;
      this.logged.clear();
      this.connected = true;
      this.log.info(
        {
          brokers: this.options.brokers,
          tls: Boolean(this.options.tls),
          sasl: this.options.sasl?.mechanism ?? 'none',
          idempotent: this.idempotent,
          delivery: this.options.delivery ?? 'exactly-once',
          client: this.kafka.kind,
        },
        'kafka producer connected',
      );
      this.markConnected();
      return true;
    } catch (error) {
      if (!this.closed) this.noteFailure(classifyKafkaFailure(error, this.options), {});
      return false;
    }
  }

  /** Records a failure for readiness; logs each distinct one once; exits when auth keeps failing. */
  private noteFailure(failure: KafkaFailure, context: { broker?: string }): void {
    if (this.connected && failure.kind === 'unreachable') return;
    this.failure = failure;
    const permanent = failure.kind !== 'unreachable';
    if (permanent) this.failingSince ??= Date.now();
    else this.failingSince = null;
    if (!this.logged.has(failure.reason)) {
      this.logged.add(failure.reason);
      const fields = { kind: failure.kind, check: failure.check, detail: failure.detail, brokers: this.options.brokers, ...context };
      if (permanent) {
        this.log.error(fields, `${failure.reason}; retrying with backoff; check ${failure.check.join(', ')}`);
      } else {
        this.log.warn(fields, `${failure.reason}; retrying with backoff`);
      }
    }
    const exitMs = this.options.authFailureExitMs ?? 0;
    if (permanent && exitMs > 0 && this.failingSince !== null && Date.now() - this.failingSince >= exitMs && !this.closed) {
      this.log.fatal(
        { kind: failure.kind, check: failure.check, failingForMs: Date.now() - this.failingSince },
        `${failure.reason} for ${Math.round(exitMs / 1000)} s; exiting so the service restarts with current secrets (KAFKA_AUTH_FAILURE_EXIT_MS)`,
      );
      this.closed = true;
      process.exit(EXIT_KAFKA_CONFIG);
    }
  }

  /** After a failed send of the idempotent producer: a new producer id for what comes next. */
  private async renewProducer(error: unknown): Promise<void> {
    if (this.closed) return;
    const old = this.producer;
    this.producer = this.newProducer();
    this.connected = false;
    this.publisher.useProducer(this.producer);
    this.log.warn(
      { err: error },
      'a send failed: replacing the idempotent producer (fresh producer id) before the next send',
    );
    await old.disconnect().catch(() => undefined);
    await this.connectOnce();
  }

  private async startWhenConnected(start: () => Promise<void>, options: { topic: string }, log: Logger): Promise<void> {
    await this.connectedOnce;
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await start();
        return;
      } catch (error) {
        if (this.closed) return;
        const failure = classifyKafkaFailure(error, this.options);
        const delayMs = connectBackoffMs(attempt);
        log.error(
          { err: error, topic: options.topic, kind: failure.kind, check: failure.check, delayMs },
          `consumer could not start: ${failure.reason}; retrying`,
        );
        await sleep(delayMs);
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

@Global()
@Module({})
export class KafkaModule {
  static forRoot(options: KafkaModuleOptions): DynamicModule {
    return {
      module: KafkaModule,
      providers: [
        { provide: KAFKA_OPTIONS, useValue: options },
        KafkaConnection,
        { provide: PUBLISHER, useFactory: (c: KafkaConnection) => c.port, inject: [KafkaConnection] },
        { provide: CONSUMERS, useExisting: KafkaConnection },
      ],
      exports: [KafkaConnection, PUBLISHER, CONSUMERS],
    };
  }
}

