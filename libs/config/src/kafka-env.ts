import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './config-error';
import { flag, list } from './env-types';

/** SASL mechanisms a Thorax service can authenticate to Kafka with. */
export const KAFKA_SASL_MECHANISMS = ['none', 'plain', 'scram-sha-256', 'scram-sha-512'] as const;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];
export const KAFKA_DELIVERY_MODES = ['exactly-once', 'at-least-once'] as const;
export type KafkaDelivery = (typeof KAFKA_DELIVERY_MODES)[number];
export const KAFKA_CLIENTS = ['kafkajs', 'librdkafka'] as const;
export type KafkaClientKind = (typeof KAFKA_CLIENTS)[number];

const optionalPath = z.string().trim().min(1).optional();

/**
 * Kafka connection variables every service shares (docs/contract.md, Configuration). TLS and
 * SASL material comes from files (mounted Secrets) or, for the password only, from the
 * environment; `kafkaClientOptions` reads the files once at start-up.
 */
export const kafkaEnv = {
  KAFKA_BROKERS: list('127.0.0.1:9092').pipe(z.array(z.string().regex(/^[^:\s]+:\d+$/, 'expected host:port')).min(1)),
  KAFKA_CLIENT_ID: z.string().min(1).optional(),
  /** TLS to the brokers; certificates are verified against KAFKA_TLS_CA_FILE (else the system CAs). */
  KAFKA_TLS: flag(false),
  /** PEM CA bundle that signed the brokers' certificates. */
  KAFKA_TLS_CA_FILE: optionalPath,
  /** PEM client certificate and key, for brokers that require mutual TLS (ssl.client.auth=required). */
  KAFKA_TLS_CERT_FILE: optionalPath,
  KAFKA_TLS_KEY_FILE: optionalPath,
  /** Name checked against the brokers' certificates when it differs from the address dialled. */
  KAFKA_TLS_SERVERNAME: z.string().trim().min(1).optional(),
  KAFKA_SASL_MECHANISM: z.enum(KAFKA_SASL_MECHANISMS).default('none'),
  KAFKA_SASL_USERNAME: z.string().min(1).optional(),
  /** The SASL password; prefer KAFKA_SASL_PASSWORD_FILE (a mounted Secret) in production. */
  KAFKA_SASL_PASSWORD: z.string().min(1).optional(),
  KAFKA_SASL_PASSWORD_FILE: optionalPath,
  /**
   * Idempotent producer (producer id and sequence numbers, so a retried send is written once).
   * Sends are serialised per service (one produce request in flight), which kafkajs needs for it.
   */
  KAFKA_PRODUCER_IDEMPOTENT: flag(true),
  /**
   * How stages that consume and produce commit (docs/contract.md "Delivery guarantees"):
   * `exactly-once` puts a fetch's outputs and its input offsets in one Kafka transaction (one
   * transactional producer per input partition); `at-least-once` publishes and then commits
   * offsets, so a failure between the two repeats outputs.
   */
  KAFKA_DELIVERY: z.enum(KAFKA_DELIVERY_MODES).default('exactly-once'),
  /**
   * After authentication or TLS has failed continuously for this long (ms), the service exits
   * so its supervisor restarts it and re-reads rotated secrets; 0 keeps it running (not ready)
   * for ever. Transient broker unavailability never makes it exit.
   */
  KAFKA_AUTH_FAILURE_EXIT_MS: z.coerce.number().int().min(0).default(300_000),
  /**
   * The Kafka client under libs/kafka's ports: `librdkafka` (@confluentinc/kafka-javascript,
   * built by scripts/rdkafka.sh and in the image; the default, for its lower CPU per record and
   * pipelined idempotent producer) or `kafkajs` (pure JavaScript, nothing to build);
   * docs/inference.md "Kafka client".
   */
  KAFKA_CLIENT: z.enum(KAFKA_CLIENTS).default('librdkafka'),
  /**
   * Where scripts/rdkafka.sh installed @confluentinc/kafka-javascript (the folder holding its
   * node_modules); default: the package as Node resolves it, else .cache/confluent-kafka of the
   * checkout. Read only with KAFKA_CLIENT=librdkafka (an image may set it for either client).
   */
  KAFKA_LIBRDKAFKA_DIR: optionalPath,
};

/** The Kafka part of a parsed service config. */
export type KafkaEnv = z.infer<z.ZodObject<typeof kafkaEnv>>;

/** TLS material for the brokers, as file contents. */
export interface KafkaTlsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
}

export interface KafkaSaslOptions {
  mechanism: Exclude<KafkaSaslMechanism, 'none'>;
  username: string;
  password: string;
}

/** Everything needed to build a Kafka client (libs/kafka `createKafkaClient`). */
export interface KafkaClientConfig {
  brokers: string[];
  clientId: string;
  /** null: plaintext. */
  tls: KafkaTlsOptions | null;
  /** null: no SASL. */
  sasl: KafkaSaslOptions | null;
  idempotentProducer: boolean;
  delivery: KafkaDelivery;
  /** 0: never exit on authentication/TLS failure. */
  authFailureExitMs: number;
  /** The client library; absent means kafkajs (createKafkaClient's own default; configs name it). */
  client?: KafkaClientKind;
  /** KAFKA_LIBRDKAFKA_DIR; absent: default resolution. */
  librdkafkaDir?: string;
}

/**
 * Consistency rules between the Kafka variables, checked by loadConfig with the schema (no file
 * access): each problem names the variable to fix.
 */
export function kafkaEnvProblems(env: Partial<KafkaEnv>): { variable: string; message: string }[] {
  const problems: { variable: string; message: string }[] = [];
  const mechanism = env.KAFKA_SASL_MECHANISM ?? 'none';
  if (mechanism !== 'none') {
    if (!env.KAFKA_SASL_USERNAME) {
      problems.push({ variable: 'KAFKA_SASL_USERNAME', message: `required when KAFKA_SASL_MECHANISM=${mechanism}` });
    }
    if (!env.KAFKA_SASL_PASSWORD && !env.KAFKA_SASL_PASSWORD_FILE) {
      problems.push({
        variable: 'KAFKA_SASL_PASSWORD_FILE',
        message: `KAFKA_SASL_PASSWORD_FILE or KAFKA_SASL_PASSWORD is required when KAFKA_SASL_MECHANISM=${mechanism}`,
      });
    }
    if (mechanism === 'plain' && !env.KAFKA_TLS) {
      problems.push({ variable: 'KAFKA_TLS', message: 'must be true with KAFKA_SASL_MECHANISM=plain (the password would cross the network in clear)' });
    }
  }
  if ((env.KAFKA_DELIVERY ?? 'exactly-once') === 'exactly-once' && env.KAFKA_PRODUCER_IDEMPOTENT === false) {
    problems.push({ variable: 'KAFKA_PRODUCER_IDEMPOTENT', message: 'must be true with KAFKA_DELIVERY=exactly-once (transactions need the idempotent producer)' });
  }
  if (env.KAFKA_CLIENT === 'librdkafka' && env.KAFKA_TLS_SERVERNAME) {
    problems.push({
      variable: 'KAFKA_TLS_SERVERNAME',
      message:
        'not supported with KAFKA_CLIENT=librdkafka, the default (librdkafka checks each broker certificate against the host name the broker advertises); ' +
        'set KAFKA_CLIENT=kafkajs to check certificates against another name',
    });
  }
  if (env.KAFKA_SASL_PASSWORD && env.KAFKA_SASL_PASSWORD_FILE) {
    problems.push({ variable: 'KAFKA_SASL_PASSWORD', message: 'set either KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both' });
  }
  if (!env.KAFKA_TLS) {
    for (const variable of ['KAFKA_TLS_CA_FILE', 'KAFKA_TLS_CERT_FILE', 'KAFKA_TLS_KEY_FILE', 'KAFKA_TLS_SERVERNAME'] as const) {
      if (env[variable]) problems.push({ variable, message: 'set, but KAFKA_TLS is not true' });
    }
  }
  if (Boolean(env.KAFKA_TLS_CERT_FILE) !== Boolean(env.KAFKA_TLS_KEY_FILE)) {
    const variable = env.KAFKA_TLS_CERT_FILE ? 'KAFKA_TLS_KEY_FILE' : 'KAFKA_TLS_CERT_FILE';
    problems.push({ variable, message: 'KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together (mutual TLS)' });
  }
  return problems;
}

/**
 * Turns a service's parsed config into the options of its Kafka client, reading the TLS files
 * and the password file once. A missing or unreadable file is a ConfigError naming its variable.
 */
export function kafkaClientOptions(config: KafkaEnv, defaultClientId: string): KafkaClientConfig {
  const problems = kafkaEnvProblems(config).map((p) => `${p.variable}: ${p.message}`);
  const read = (variable: keyof KafkaEnv, what: 'pem' | 'secret'): Buffer | undefined => {
    const file = config[variable];
    if (typeof file !== 'string') return undefined;
    try {
      if (!statSync(file).isFile()) throw new Error('not a regular file');
      const content = readFileSync(file);
      if (content.length === 0) throw new Error('empty file');
      if (what === 'pem' && !content.includes('-----BEGIN ')) throw new Error('no PEM block in it');
      return content;
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      problems.push(`${variable}: cannot read ${JSON.stringify(file)} (${reason})`);
      return undefined;
    }
  };
  const tls: KafkaTlsOptions | null = config.KAFKA_TLS
    ? {
        ca: read('KAFKA_TLS_CA_FILE', 'pem'),
        cert: read('KAFKA_TLS_CERT_FILE', 'pem'),
        key: read('KAFKA_TLS_KEY_FILE', 'pem'),
        servername: config.KAFKA_TLS_SERVERNAME,
      }
    : null;
  let sasl: KafkaSaslOptions | null = null;
  if (config.KAFKA_SASL_MECHANISM !== 'none') {
    // A Secret mounted as a file usually ends with a newline that is not part of the password.
    const fromFile = read('KAFKA_SASL_PASSWORD_FILE', 'secret')?.toString('utf8').replace(/\r?\n$/, '');
    const password = fromFile ?? config.KAFKA_SASL_PASSWORD;
    if (config.KAFKA_SASL_PASSWORD_FILE && fromFile === '') problems.push('KAFKA_SASL_PASSWORD_FILE: the file holds an empty password');
    if (config.KAFKA_SASL_USERNAME && password) {
      sasl = { mechanism: config.KAFKA_SASL_MECHANISM, username: config.KAFKA_SASL_USERNAME, password };
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${[...new Set(problems)].join('\n  ')}`);
  return {
    brokers: config.KAFKA_BROKERS,
    clientId: config.KAFKA_CLIENT_ID ?? defaultClientId,
    tls,
    sasl,
    idempotentProducer: config.KAFKA_PRODUCER_IDEMPOTENT,
    delivery: config.KAFKA_DELIVERY,
    authFailureExitMs: config.KAFKA_AUTH_FAILURE_EXIT_MS,
    client: config.KAFKA_CLIENT,
    ...(config.KAFKA_CLIENT === 'librdkafka' && config.KAFKA_LIBRDKAFKA_DIR ? { librdkafkaDir: config.KAFKA_LIBRDKAFKA_DIR } : {}),
  };
}
