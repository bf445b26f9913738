/**
 * Kafka security end to end: a real KRaft broker whose client listener is SASL_SSL with
 * SCRAM-SHA-512 and a required client certificate (keytool-made certificates), the topic
 * provisioner and the four built services configured by environment only, and the failure modes
 * an operator meets: a wrong password, a CA that did not sign the broker, no client certificate.
 * Starts its own broker on the ports below; needs `bash scripts/kafka.sh fetch`'s jars and a
 * built dist/ (npm test does both).
 */
import { type KafkaClientConfig, kafkaClientOptions, loadConfig, sharedEnv, z } from '@thorax/config';
import {
  REPO_ROOT,
  type RunningService,
  type SecureKafka,
  servicePorts,
  startBuiltService,
  startSecureKafka,
  startServices,
  syntheticChestXray,
} from '@thorax/testing';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { createKafkaClient } from './kafka-client';

jest.setTimeout(180_000);

// Ports of this test: broker 22092 (controller 22093), services 22080-22083 (+ gRPC 22090),
// the misconfigured services 22085-22087. THORAX_SECURE_KAFKA_PORT_BASE moves them all.
const BASE = Number(process.env['THORAX_SECURE_KAFKA_PORT_BASE'] ?? 22080);
const PORTS = servicePorts(BASE);
const BROKER_PORT = BASE + 12;
const RUN = `secure-${Date.now().toString(36)}`;
// Certificates, config and data of this run's broker (removed afterwards; its log is kept).
const DIR = path.join(REPO_ROOT, '.cache', 'secure-kafka-test', RUN);
const LOG_DIR = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
const PASSWORDS = {
  admin: `adm-${Math.random().toString(36).slice(2)}-secret`,
  thorax: `thx-${Math.random().toString(36).slice(2)}-secret`,
  pacs: `pacs-${Math.random().toString(36).slice(2)}-secret`,
};
const WRONG_PASSWORD = `wrong-${Math.random().toString(36).slice(2)}-secret`;
const silent = pino({ level: 'silent' });

let broker: SecureKafka;
const services: RunningService[] = [];

/**
 * The environment an operator would set: TLS with the CA file and a client certificate (the
 * broker requires one), SCRAM with a password file.
 */
function secureEnv(passwordFile: string, caFile = broker.caFile): Record<string, string> {
  return {
    KAFKA_BROKERS: broker.bootstrap,
    KAFKA_TLS: 'true',
    KAFKA_TLS_CA_FILE: caFile,
    KAFKA_TLS_CERT_FILE: broker.clientCertFile,
    KAFKA_TLS_KEY_FILE: broker.clientKeyFile,
    KAFKA_SASL_MECHANISM: 'scram-sha-512',
    KAFKA_SASL_USERNAME: 'thorax',
    KAFKA_SASL_PASSWORD_FILE: passwordFile,
    LOG_LEVEL: 'info',
  };
}

/** A client built the way the services build theirs: variables → loadConfig → kafkaClientOptions. */
function clientFor(user: 'pacs', clientId: string): ReturnType<typeof createKafkaClient> {
  const options: KafkaClientConfig = kafkaClientOptions(
    loadConfig(z.object(sharedEnv), {
      KAFKA_BROKERS: broker.bootstrap,
      KAFKA_TLS: 'true',
      KAFKA_TLS_CA_FILE: broker.caFile,
      KAFKA_TLS_CERT_FILE: broker.clientCertFile,
      KAFKA_TLS_KEY_FILE: broker.clientKeyFile,
      KAFKA_SASL_MECHANISM: 'scram-sha-512',
      KAFKA_SASL_USERNAME: user,
      KAFKA_SASL_PASSWORD: PASSWORDS[user],
    }),
    clientId,
  );
  return createKafkaClient(options, silent);
}

function writeSecret(name: string, value: string): string {
  const file = path.join(broker.dir, name);
  writeFileSync(file, `${value}\n`, { mode: 0o600 });
  return file;
}

async function readyz(port: number): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: await res.text() };
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== null) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} not within ${timeoutMs} ms${last ? ` (${String(last)})` : ''}`);
}

beforeAll(async () => {
  const t0 = Date.now();
  broker = await startSecureKafka({ dir: DIR, port: BROKER_PORT, controllerPort: BROKER_PORT + 1, users: PASSWORDS, mutualTls: true });
  // eslint-disable-next-line no-console -- set-up cost, for whoever tunes the suite's time
  console.info(`secure broker (certificates, format, start) ready in ${Date.now() - t0} ms`);
  // Topics by the provisioner (`thorax topics`, the Helm Job's command), configured like the
  // services; one broker, so replication 1.
  const provisioner = startBuiltService(
    'topics',
    {
      ...secureEnv(writeSecret('admin.password', PASSWORDS.admin)),
      KAFKA_SASL_USERNAME: 'admin',
      KAFKA_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_TOPIC_MIN_INSYNC_REPLICAS: '1',
    },
    LOG_DIR,
  );
  const code = await new Promise<number | null>((resolve) => provisioner.process.once('exit', (c) => resolve(c)));
  if (code !== 0) throw new Error(`topic provisioning failed (exit ${code}); log: ${provisioner.logFile}`);
}, 150_000);

afterAll(async () => {
  await Promise.all(services.map((s) => s.stop()));
  if (broker) {
    await broker.stop();
    mkdirSync(LOG_DIR, { recursive: true });
    copyFileSync(broker.logFile, path.join(LOG_DIR, 'broker.kafka-log'));
    rmSync(broker.dir, { recursive: true, force: true });
  }
});

describe('services on a TLS + SCRAM-SHA-512 broker', () => {
  it('connect with configuration only; an image published over TLS+SCRAM becomes a stored result', async () => {
    const password = writeSecret('thorax.password', PASSWORDS.thorax);
    const started = await startServices({
      ports: PORTS,
      logDir: LOG_DIR,
      readyTimeoutMs: 120_000,
      env: {
        ...secureEnv(password),
        MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
        RESULTS_DATA_DIR: 'memory://',
        INFERENCE_PROVIDERS: 'cpu',
        INFERENCE_WORKERS: '1',
        INFERENCE_MAX_BATCH: '2',
        PREPROCESS_DECODE_WORKERS: '1',
      },
    });
    services.push(...started.values());

    const id = `${RUN}-png`;
    const producer = clientFor('pacs', 'thorax-test-pacs').producer({ allowAutoTopicCreation: false });
    await producer.connect();
    try {
      await producer.send({
        topic: 'thorax.studies.v1',
        acks: -1,
        messages: [{ key: id, value: await syntheticChestXray({ width: 320, height: 320, seed: 3 }), headers: { 'content-type': 'image/png' } }],
      });
    } finally {
      await producer.disconnect();
    }
    const stored = await until('the stored result', 60_000, async () => {
      const res = await fetch(`http://127.0.0.1:${PORTS.results}/v1/findings/${encodeURIComponent(id)}`);
      return res.ok ? ((await res.json()) as { id: string; status: string; findings: unknown[] }) : null;
    });
    expect(stored.id).toBe(id);
    expect(stored.status).toBe('ok');
    expect(stored.findings).toHaveLength(14);
    for (const service of services) {
      const log = readFileSync(service.logFile, 'utf8');
      expect(log).toMatch(/"tls":true,"sasl":"scram-sha-512","idempotent":true[^\n]*"msg":"kafka producer connected"/);
    }
  });

  it('a wrong password: alive, /readyz 503 naming the authentication failure, one clear error, then exit 78', async () => {
    const port = BASE + 5;
    const ingest = startBuiltService(
      'ingest',
      { ...secureEnv(writeSecret('wrong.password', WRONG_PASSWORD)), HTTP_PORT: String(port), KAFKA_AUTH_FAILURE_EXIT_MS: '6000' },
      path.join(LOG_DIR, 'wrong-password'),
    );
    services.push(ingest);
    const t0 = Date.now();
    const ready = await until('readiness naming the failure', 20_000, async () => {
      const r = await readyz(port);
      return r.body.includes('authentication failed') ? r : null;
    });
    const detectedMs = Date.now() - t0;
    expect(ready.status).toBe(503);
    expect(ready.body).toContain('kafka: authentication failed (SCRAM-SHA-512)');
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    expect(ingest.process.exitCode).toBeNull();
    // eslint-disable-next-line no-console -- the figure the issue asks to see
    console.info(`wrong password: /readyz named it ${detectedMs} ms after the process started`);

    const code = await new Promise<number | null>((resolve) => ingest.process.once('exit', (c) => resolve(c)));
    const aliveMs = Date.now() - t0;
    expect(code).toBe(78);
    expect(aliveMs).toBeGreaterThanOrEqual(6000);
    const lines = readFileSync(ingest.logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const errors = lines.filter((l) => l['level'] === 'error' && String(l['msg']).startsWith('kafka: authentication failed (SCRAM-SHA-512)'));
    expect(errors).toHaveLength(1);
    expect(String(errors[0]!['msg'])).toContain('check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD_FILE (or KAFKA_SASL_PASSWORD), KAFKA_SASL_MECHANISM');
    expect(lines.some((l) => l['level'] === 'fatal' && String(l['msg']).includes('KAFKA_AUTH_FAILURE_EXIT_MS'))).toBe(true);
    // Consumers never started: no group was joined with bad credentials.
    expect(lines.some((l) => l['msg'] === 'consuming' || l['msg'] === 'joined consumer group')).toBe(false);
  });

  it('a CA that did not sign the broker: /readyz 503 naming the TLS failure within seconds', async () => {
    const port = BASE + 6;
    const ingest = startBuiltService(
      'ingest',
      { ...secureEnv(writeSecret('thorax2.password', PASSWORDS.thorax), broker.otherCaFile), HTTP_PORT: String(port) },
      path.join(LOG_DIR, 'wrong-ca'),
    );
    services.push(ingest);
    const ready = await until('readiness naming the TLS failure', 20_000, async () => {
      const r = await readyz(port);
      return r.body.includes('TLS handshake failed') ? r : null;
    });
    expect(ready.status).toBe(503);
    expect(ready.body).toMatch(/kafka: TLS handshake failed \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    const log = readFileSync(ingest.logFile, 'utf8');
    expect(log).toMatch(/"level":"error"[^\n]*"msg":"kafka: TLS handshake failed[^\n]*check KAFKA_TLS_CA_FILE/);
    await ingest.stop();
  });

  it('no client certificate where the broker requires one: /readyz 503 naming the TLS failure', async () => {
    const port = BASE + 7;
    const env = secureEnv(writeSecret('thorax3.password', PASSWORDS.thorax));
    delete env['KAFKA_TLS_CERT_FILE'];
    delete env['KAFKA_TLS_KEY_FILE'];
    const ingest = startBuiltService('ingest', { ...env, HTTP_PORT: String(port) }, path.join(LOG_DIR, 'no-client-cert'));
    services.push(ingest);
    const ready = await until('readiness naming the TLS failure', 20_000, async () => {
      const r = await readyz(port);
      return r.body.includes('TLS handshake failed') ? r : null;
    });
    expect(ready.status).toBe(503);
    expect(ready.body).toMatch(/kafka: TLS handshake failed \(ERR_SSL_[A-Z0-9_/]+\)/);
    expect(readFileSync(ingest.logFile, 'utf8')).toMatch(/"msg":"kafka: TLS handshake failed[^\n]*check KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE/);
    await ingest.stop();
  });

  it('no password appears in any log', () => {
    const files = readdirSync(LOG_DIR, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile() && e.name.endsWith('.log'))
      .map((e) => path.join(e.parentPath, e.name));
    expect(files.length).toBeGreaterThanOrEqual(8);
    for (const file of files) {
      const log = readFileSync(file, 'utf8');
      for (const secret of [...Object.values(PASSWORDS), WRONG_PASSWORD]) expect(log).not.toContain(secret);
    }
  });
});
