import type { Logger } from '@thorax/observability';
import { type ClientConsumer, createClient, type KafkaClient } from './client-port';
import type { KafkaClientOptions } from './kafka-client';
import { decodeHeaders } from './records';

/** One record of a followed topic: key, value and headers, nothing to acknowledge. */
export interface FollowedRecord {
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
  partition: number;
}

export interface FollowSpec {
  topic: string;
  /**
   * A group id of this process alone (e.g. `<group>.<host>.<pid>`): every partition is assigned
   * to it. Offsets are never committed, so the group leaves nothing behind when the process ends.
   */
  groupId: string;
}

/**
 * Reads every partition of a topic from its end (records written after `start`), read_committed,
 * without committing offsets: for a process that watches a topic rather than processing it (ingest
 * correlating findings with synchronous predict calls). `ready` turns true once the partitions are
 * assigned and positioned, and false while they are not (start-up, rebalance, disconnect).
 */
export class TopicFollower {
  private readonly kafka: KafkaClient;
  private consumer: ClientConsumer | null = null;
  private assigned = false;
  private stopped = false;

  constructor(
    options: KafkaClientOptions,
    private readonly log: Logger,
  ) {
    this.kafka = createClient(options, log.child({ component: 'follower' }));
  }

  get ready(): boolean {
    return this.assigned && !this.stopped;
  }

  /** Starts following, retrying with backoff until it runs or `stop` is called. */
  async start(spec: FollowSpec, onRecord: (record: FollowedRecord) => void): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await this.run(spec, onRecord);
        return;
      } catch (error) {
        this.assigned = false;
        const delayMs = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5));
        this.log.warn({ err: error, topic: spec.topic, delayMs }, 'cannot follow topic yet; retrying');
        await this.consumer?.disconnect().catch(() => undefined);
        this.consumer = null;
        await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.assigned = false;
    await this.consumer?.disconnect().catch(() => undefined);
    this.consumer = null;
  }

  private async run(spec: FollowSpec, onRecord: (record: FollowedRecord) => void): Promise<void> {
    const consumer: ClientConsumer = this.kafka.consumer(
      {
        groupId: spec.groupId,
        sessionTimeoutMs: 30_000,
        heartbeatIntervalMs: 3_000,
        maxWaitTimeMs: 100,
        autoCommit: false,
        fromBeginning: false,
      },
      {
        onAssigned: () => {
          this.assigned = true;
          this.log.info({ topic: spec.topic, group: spec.groupId }, 'following topic from its end');
        },
        onRebalancing: () => (this.assigned = false),
        onDisconnect: () => (this.assigned = false),
        onCrash: (error, restart) => {
          this.assigned = false;
          this.log.warn({ err: error, topic: spec.topic, restart }, 'topic follower crashed');
          // kafkajs restarts after retriable errors itself; after any other, a fresh consumer.
          if (!restart && !this.stopped) {
            void consumer
              .disconnect()
              .catch(() => undefined)
              .then(() => this.start(spec, onRecord));
          }
        },
      },
    );
    this.consumer = consumer;
    await consumer.connect();
    await consumer.subscribe(spec.topic);
    await consumer.run({
      partitionsConsumedConcurrently: 1,
      eachMessage: async ({ message, partition }) => {
        try {
          onRecord({
            key: message.key ? message.key.toString('utf8') : null,
            value: message.value ?? Buffer.alloc(0),
            headers: decodeHeaders(message.headers),
            partition,
          });
        } catch (error) {
          this.log.warn({ err: error, topic: spec.topic, partition }, 'followed record not handled');
        }
      },
    });
  }
}
