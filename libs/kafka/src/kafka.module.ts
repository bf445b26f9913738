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
import { type Kafka, Partitioners, type Producer } from 'kafkajs';
import { createKafkaClient, type KafkaClientOptions } from './kafka-client';
import { KafkaPublisher } from './kafka-publisher';
import { type RecordConsumerOptions, type RecordHandler, RecordConsumer } from './record-consumer';
import { PUBLISHER, type Publisher } from './records';

export type KafkaModuleOptions = KafkaClientOptions;

const KAFKA_OPTIONS = Symbol('thorax.kafka.options');

/**
 * Owns the service's Kafka client: one idempotence-free producer with acks from all replicas
 * (kafkajs's idempotent mode is experimental), and the consumers the app creates. On shutdown
 * the consumers drain and commit first, then the producer disconnects.
 */
@Injectable()
export class KafkaConnection implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  readonly kafka: Kafka;
  readonly producer: Producer;
  readonly publisher: Publisher;
  private producerConnected = false;
  private readonly consumers: RecordConsumer[] = [];

  constructor(
    @Inject(KAFKA_OPTIONS) options: KafkaModuleOptions,
    @Inject(LOGGER) private readonly log: Logger,
    private readonly metrics: ThoraxMetrics,
    private readonly health: HealthRegistry,
  ) {
    this.kafka = createKafkaClient(options, log);
    this.producer = this.kafka.producer({
      allowAutoTopicCreation: false,
      maxInFlightRequests: 5,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    this.producer.on(this.producer.events.CONNECT, () => (this.producerConnected = true));
    this.producer.on(this.producer.events.DISCONNECT, () => (this.producerConnected = false));
    this.publisher = new KafkaPublisher(this.producer);
    health.addReadiness('kafka-producer', () =>
      this.producerConnected ? healthy : unhealthy('producer not connected'),
    );
  }

  async onModuleInit(): Promise<void> {
    await this.producer.connect();
    this.log.info('kafka producer connected');
  }

  createConsumer(options: RecordConsumerOptions, handler: RecordHandler): RecordConsumer {
    const consumer = new RecordConsumer(
      this.kafka,
      options,
      handler,
      this.publisher,
      this.metrics,
      this.health,
      this.log.child({ component: 'consumer', group: options.groupId }),
    );
    this.consumers.push(consumer);
    return consumer;
  }

  async beforeApplicationShutdown(): Promise<void> {
    await Promise.all(this.consumers.map((c) => c.stop()));
  }

  async onApplicationShutdown(): Promise<void> {
    await this.producer.disconnect();
    this.log.info('kafka producer disconnected');
  }
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
        { provide: PUBLISHER, useFactory: (c: KafkaConnection) => c.publisher, inject: [KafkaConnection] },
      ],
      exports: [KafkaConnection, PUBLISHER],
    };
  }
}
