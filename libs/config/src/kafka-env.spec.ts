import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { kafkaClientOptions } from './kafka-env';
import { ConfigError, loadConfig, sharedEnv, z } from './load-config';

const schema = z.object({ ...sharedEnv });
const dir = mkdtempSync(path.join(tmpdir(), 'thorax-kafka-env-'));
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const file = (name: string, content: string) => {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
};

function problems(env: Record<string, string>): string {
  try {
    kafkaClientOptions(loadConfig(schema, env), 'thorax-test');
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('Kafka client configuration', () => {
  it('defaults to plaintext without SASL, an idempotent producer and a 5 minute auth give-up', () => {
    const options = kafkaClientOptions(loadConfig(schema, {}), 'thorax-ingest');
    expect(options).toEqual({
      brokers: ['127.0.0.1:9092'],
      clientId: 'thorax-ingest',
      tls: null,
      sasl: null,
      idempotentProducer: true,
      delivery: 'exactly-once',
      authFailureExitMs: 300_000,
      client: 'librdkafka',
    });
  });

  it('chooses the Kafka client (librdkafka by default) and where the librdkafka build lives', () => {
    expect(kafkaClientOptions(loadConfig(schema, {}), 'x')).toMatchObject({ client: 'librdkafka' });
    expect(kafkaClientOptions(loadConfig(schema, { KAFKA_CLIENT: 'kafkajs' }), 'x')).toMatchObject({ client: 'kafkajs' });
    expect(kafkaClientOptions(loadConfig(schema, { KAFKA_CLIENT: 'librdkafka' }), 'x')).toMatchObject({ client: 'librdkafka' });
    expect(kafkaClientOptions(loadConfig(schema, { KAFKA_CLIENT: 'librdkafka', KAFKA_LIBRDKAFKA_DIR: '/opt/ckjs' }), 'x')).toMatchObject({
      client: 'librdkafka',
      librdkafkaDir: '/opt/ckjs',
    });
    expect(() => loadConfig(schema, { KAFKA_CLIENT: 'rdkafka' })).toThrow(/KAFKA_CLIENT/);
    // An image may set the directory for both clients; kafkajs ignores it.
    expect(kafkaClientOptions(loadConfig(schema, { KAFKA_CLIENT: 'kafkajs', KAFKA_LIBRDKAFKA_DIR: '/opt/ckjs' }), 'x').librdkafkaDir).toBeUndefined();
    // librdkafka has no SNI/host name override: refused rather than silently ignored.
    expect(() => loadConfig(schema, { KAFKA_TLS: 'true', KAFKA_TLS_SERVERNAME: 'kafka.internal' })).toThrow(
      /KAFKA_TLS_SERVERNAME: not supported with KAFKA_CLIENT=librdkafka, the default.*set KAFKA_CLIENT=kafkajs/,
    );
    expect(loadConfig(schema, { KAFKA_CLIENT: 'kafkajs', KAFKA_TLS: 'true', KAFKA_TLS_SERVERNAME: 'kafka.internal' }).KAFKA_TLS_SERVERNAME).toBe(
      'kafka.internal',
    );
  });

  it('reads TLS files and the password file once, dropping the trailing newline of a mounted Secret', () => {
    const options = kafkaClientOptions(
      loadConfig(schema, {
        KAFKA_BROKERS: 'kafka-0.kafka:9093,kafka-1.kafka:9093',
        KAFKA_CLIENT_ID: 'thorax-ingest-a',
        KAFKA_TLS: 'true',
        KAFKA_TLS_CA_FILE: file('ca.pem', PEM),
        KAFKA_TLS_CERT_FILE: file('client.pem', PEM),
        KAFKA_TLS_KEY_FILE: file('client.key', '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n'),
        KAFKA_CLIENT: 'kafkajs',
        KAFKA_TLS_SERVERNAME: 'kafka.internal',
        KAFKA_SASL_MECHANISM: 'scram-sha-512',
        KAFKA_SASL_USERNAME: 'thorax',
        KAFKA_SASL_PASSWORD_FILE: file('password', 's3cret pass\n'),
        KAFKA_PRODUCER_IDEMPOTENT: 'false',
        KAFKA_DELIVERY: 'at-least-once',
        KAFKA_AUTH_FAILURE_EXIT_MS: '0',
      }),
      'thorax-ingest',
    );
    expect(options.clientId).toBe('thorax-ingest-a');
    expect(options.tls?.ca?.toString()).toBe(PEM);
    expect(options.tls?.cert?.toString()).toBe(PEM);
    expect(options.tls?.key?.toString()).toContain('PRIVATE KEY');
    expect(options.tls?.servername).toBe('kafka.internal');
    expect(options.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'thorax', password: 's3cret pass' });
    expect(options.idempotentProducer).toBe(false);
    expect(options.delivery).toBe('at-least-once');
    expect(options.authFailureExitMs).toBe(0);
  });

  it('delivers exactly once by default, and refuses a non-idempotent producer for it', () => {
    expect(kafkaClientOptions(loadConfig(schema, {}), 'x').delivery).toBe('exactly-once');
    expect(() => loadConfig(schema, { KAFKA_PRODUCER_IDEMPOTENT: 'false' })).toThrow(/KAFKA_PRODUCER_IDEMPOTENT/);
    expect(() => loadConfig(schema, { KAFKA_DELIVERY: 'twice' })).toThrow(/KAFKA_DELIVERY/);
  });

  it('takes the password from the environment when no file is given', () => {
    const options = kafkaClientOptions(
      loadConfig(schema, { KAFKA_SASL_MECHANISM: 'scram-sha-256', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' }),
      'x',
    );
    expect(options.sasl).toEqual({ mechanism: 'scram-sha-256', username: 'u', password: 'p' });
    expect(options.tls).toBeNull();
  });

  it('names the variable of each inconsistency (checked by loadConfig itself)', () => {
    expect(() => loadConfig(schema, { KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_PASSWORD: 'p' })).toThrow(
      /KAFKA_SASL_USERNAME: required when KAFKA_SASL_MECHANISM=scram-sha-512/,
    );
    expect(() => loadConfig(schema, { KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_USERNAME: 'u' })).toThrow(
      /KAFKA_SASL_PASSWORD_FILE: KAFKA_SASL_PASSWORD_FILE or KAFKA_SASL_PASSWORD is required/,
    );
    expect(() => loadConfig(schema, { KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' })).toThrow(
      /KAFKA_TLS: must be true with KAFKA_SASL_MECHANISM=plain/,
    );
    expect(() => loadConfig(schema, { KAFKA_TLS_CA_FILE: '/etc/ca.pem' })).toThrow(/KAFKA_TLS_CA_FILE: set, but KAFKA_TLS is not true/);
    expect(() => loadConfig(schema, { KAFKA_TLS: 'true', KAFKA_TLS_CERT_FILE: '/c.pem' })).toThrow(/KAFKA_TLS_KEY_FILE: KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together/);
    expect(() => loadConfig(schema, { KAFKA_SASL_MECHANISM: 'gssapi' })).toThrow(/KAFKA_SASL_MECHANISM/);
    expect(() => loadConfig(schema, { KAFKA_TLS: 'maybe' })).toThrow(/KAFKA_TLS/);
  });

  it('reports missing, empty and non-PEM files by variable, never echoing a password', () => {
    const base = { KAFKA_TLS: 'true', KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_USERNAME: 'u' };
    expect(problems({ ...base, KAFKA_SASL_PASSWORD_FILE: path.join(dir, 'absent') })).toMatch(
      /KAFKA_SASL_PASSWORD_FILE: cannot read ".*absent" \(ENOENT\)/,
    );
    expect(problems({ ...base, KAFKA_SASL_PASSWORD_FILE: file('empty', '') })).toMatch(/KAFKA_SASL_PASSWORD_FILE: cannot read .* \(empty file\)/);
    expect(problems({ ...base, KAFKA_SASL_PASSWORD_FILE: dir })).toMatch(/KAFKA_SASL_PASSWORD_FILE: cannot read .*not a regular file/);
    const message = problems({ ...base, KAFKA_SASL_PASSWORD: 'hunter2-secret', KAFKA_TLS_CA_FILE: file('notpem', 'hello') });
    expect(message).toMatch(/KAFKA_TLS_CA_FILE: cannot read .* \(no PEM block in it\)/);
    expect(message).not.toContain('hunter2-secret');
  });

  it('never echoes a secret value in a schema error', () => {
    const secretSchema = z.object({ ...sharedEnv, KAFKA_SASL_PASSWORD: z.string().min(20).optional() });
    expect(() => loadConfig(secretSchema, { KAFKA_SASL_PASSWORD: 'short-secret' })).toThrow(/KAFKA_SASL_PASSWORD: .*\(got \[redacted\]\)/);
  });
});
