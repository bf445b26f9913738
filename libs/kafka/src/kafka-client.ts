import { isIP, type Socket, connect as netConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { KafkaClientConfig } from '@thorax/config';
import type { Logger } from '@thorax/observability';
import { type ISocketFactory, Kafka, type KafkaConfig, logLevel, type LogEntry, type SASLOptions } from 'kafkajs';
import { fixKafkajsRequestQueueTimer } from './kafkajs-request-queue';
import { installNativeCrc32c } from './native-crc32c';

/**
 * How a service reaches its Kafka cluster (docs/contract.md, Configuration): brokers and client
 * id, and optionally TLS, SASL and producer settings (`kafkaClientOptions(config, …)` of
 * @thorax/config builds the whole object from the environment).
 */
export type KafkaClientOptions = Pick<KafkaClientConfig, 'brokers' | 'clientId'> &
  Partial<Omit<KafkaClientConfig, 'brokers' | 'clientId'>>;

/** Hooks into the client's transport, for diagnosis (TLS handshake failures are seen at once). */
export interface KafkaClientHooks {
  /** A socket to a broker failed (TLS handshake, refused, reset); kafkajs retries it itself. */
  onSocketError?: (error: Error, broker: string) => void;
}

const KEEP_ALIVE_DELAY_MS = 60_000;
const REPEAT_WINDOW_MS = 60_000;
const LIMITED_RETRIES_WARNING = 'Limiting retries for the idempotent producer may invalidate EoS guarantees';

/**
 * The one place a kafkajs client is built: brokers, client id, TLS and SASL, retry policy and
 * kafkajs logs routed through the service's structured logger. Every producer, consumer and
 * admin client of a service (and the topic provisioner) comes from a client made here.
 */
export function createKafkaClient(options: KafkaClientOptions, log: Logger, hooks: KafkaClientHooks = {}): Kafka {
  if (!installNativeCrc32c()) log.debug('kafkajs checksums record batches with its own JavaScript CRC-32C');
  if (!fixKafkajsRequestQueueTimer()) log.warn('kafkajs request queues keep their 1 ms idle timer (unexpected kafkajs layout)');
  return new Kafka(kafkaConfig(options, log, hooks));
}

/** The kafkajs configuration createKafkaClient uses (exported for tests). */
export function kafkaConfig(options: KafkaClientOptions, log: Logger, hooks: KafkaClientHooks = {}): KafkaConfig {
  const kafkaLog = log.child({ component: 'kafkajs' });
  const repeats = new RepeatFilter(REPEAT_WINDOW_MS);
  const ssl = tlsOptions(options);
  return {
    clientId: options.clientId,
    brokers: options.brokers,
    ...(ssl ? { ssl } : {}),
    ...(options.sasl ? { sasl: saslOptions(options.sasl) } : {}),
    socketFactory: socketFactory(hooks),
    logLevel: logLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      const { message, ...extra } = entry.log;
      // The idempotent producer's bounded retries are intended: a send that gives up is followed
      // by a fresh producer id before the next one (KafkaConnection), so no sequence is reused.
      const expected = message === LIMITED_RETRIES_WARNING;
      const level = expected ? 'debug' : entry.level <= logLevel.ERROR ? 'error' : entry.level === logLevel.WARN ? 'warn' : 'debug';
      // kafkajs logs every retry of a failing connection; the same line is kept once a minute.
      const repeated = level === 'debug' ? 0 : repeats.admit(`${entry.namespace}|${message}`);
      if (repeated === null) return;
      kafkaLog[level]({ namespace: entry.namespace, ...extra, ...(repeated > 0 ? { repeated } : {}) }, message);
    },
    retry: { initialRetryTime: 300, retries: 10 },
  };
}

/** TLS context options: certificates always verified, the CA and client pair when given. */
export function tlsOptions(options: KafkaClientOptions): ConnectionOptions | null {
  if (!options.tls) return null;
  const { ca, cert, key, servername } = options.tls;
  return {
    rejectUnauthorized: true,
    ...(ca ? { ca } : {}),
    ...(cert && key ? { cert, key } : {}),
    ...(servername ? { servername } : {}),
  };
}

function saslOptions(sasl: NonNullable<KafkaClientOptions['sasl']>): SASLOptions {
  const { username, password } = sasl;
  switch (sasl.mechanism) {
    case 'plain':
      return { mechanism: 'plain', username, password };
    case 'scram-sha-256':
      return { mechanism: 'scram-sha-256', username, password };
    case 'scram-sha-512':
      return { mechanism: 'scram-sha-512', username, password };
  }
}

/**
 * kafkajs's own socket factory (TCP or TLS, SNI from the host name unless an IP, keep-alive),
 * plus a listener that reports socket errors as they happen: kafkajs wraps a failed TLS
 * handshake in a retriable connection error and retries it for minutes, while the service wants
 * to say at once that its certificates are wrong.
 */
function socketFactory(hooks: KafkaClientHooks): ISocketFactory {
  return ({ host, port, ssl, onConnect }) => {
    const socket: Socket = ssl
      ? tlsConnect({ host, port, ...(isIP(host) ? {} : { servername: host }), ...ssl }, onConnect)
      : netConnect({ host, port }, onConnect);
    socket.setKeepAlive(true, KEEP_ALIVE_DELAY_MS);
    if (hooks.onSocketError) {
      const report = hooks.onSocketError;
      socket.on('error', (error) => report(error, `${host}:${port}`));
    }
    return socket;
  };
}

/**
 * Lets a log line through once per window: `admit` answers null for a repeat inside the window,
 * else how many repeats were held back since the line last went out.
 */
export class RepeatFilter {
  private readonly seen = new Map<string, { until: number; held: number }>();

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 500,
  ) {}

  admit(key: string): number | null {
    const t = this.now();
    const entry = this.seen.get(key);
    if (entry && t < entry.until) {
      entry.held += 1;
      return null;
    }
    if (!entry && this.seen.size >= this.maxKeys) this.seen.clear();
    this.seen.set(key, { until: t + this.windowMs, held: 0 });
    return entry?.held ?? 0;
  }
}
