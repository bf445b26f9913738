import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './processes';

const run = promisify(execFile);

/** A real KRaft broker whose only client listener is SASL_SSL with SCRAM-SHA-512. */
export interface SecureKafka {
  /** `localhost:<port>`: the broker certificate names localhost and 127.0.0.1. */
  bootstrap: string;
  /** PEM of the test CA that signed the broker certificate (what clients trust). */
  caFile: string;
  /** PEM of another CA, which did not sign the broker (for a failing TLS check). */
  otherCaFile: string;
  /** PEM client certificate (signed by the test CA, clientAuth) and its unencrypted key. */
  clientCertFile: string;
  clientKeyFile: string;
  /** SCRAM users created at format time, name → password. */
  users: Record<string, string>;
  dir: string;
  logFile: string;
  stop(): Promise<void>;
}

export interface SecureKafkaOptions {
  /** Working directory (certificates, config, data, log); emptied first. */
  dir: string;
  port: number;
  controllerPort: number;
  /** SCRAM-SHA-512 users; `admin` is also the broker's own inter-broker identity. */
  users: Record<string, string>;
  /** Require a client certificate signed by the test CA as well (ssl.client.auth=required). */
  mutualTls?: boolean;
  startTimeoutMs?: number;
}

const JAVA = process.env['JAVA_HOME'] ? path.join(process.env['JAVA_HOME'], 'bin', 'java') : 'java';
const KEYTOOL = process.env['JAVA_HOME'] ? path.join(process.env['JAVA_HOME'], 'bin', 'keytool') : 'keytool';
const LIBS = path.join(REPO_ROOT, '.cache', 'kafka', 'libs');

/**
 * Certificates made with the JDK's keytool: a CA, a PKCS#12 broker keystore signed by it (SAN
 * localhost and 127.0.0.1, serverAuth), a truststore, the CA as PEM for Node clients, a client
 * certificate (clientAuth) with its key as PEM for mutual TLS, and an unrelated CA for negative
 * tests. Valid for two days.
 */
export async function makeTestCertificates(
  dir: string,
  storePassword: string,
): Promise<{ caFile: string; otherCaFile: string; keystore: string; truststore: string; clientCertFile: string; clientKeyFile: string }> {
  mkdirSync(dir, { recursive: true });
  const p = (name: string) => path.join(dir, name);
  // Short-lived JVMs: client compiler only and a serial GC start noticeably faster.
  const kt = (...args: string[]) =>
    run(KEYTOOL, ['-J-XX:TieredStopAtLevel=1', '-J-XX:+UseSerialGC', '-J-Xmx128m', ...args], { cwd: dir, timeout: 60_000 });
  const common = ['-storetype', 'PKCS12', '-storepass', storePassword, '-keyalg', 'RSA', '-keysize', '2048', '-validity', '2'];
  const san = 'SAN=dns:localhost,ip:127.0.0.1';
  await Promise.all([
    kt('-genkeypair', '-alias', 'ca', '-dname', 'CN=Thorax Test CA', '-ext', 'bc:c', '-keystore', p('ca.p12'), ...common),
    kt('-genkeypair', '-alias', 'ca', '-dname', 'CN=Unrelated Test CA', '-ext', 'bc:c', '-keystore', p('other-ca.p12'), ...common),
    kt('-genkeypair', '-alias', 'broker', '-dname', 'CN=localhost', '-ext', san, '-keystore', p('broker.p12'), ...common),
    kt('-genkeypair', '-alias', 'client', '-dname', 'CN=thorax-client', '-keystore', p('client.p12'), ...common),
  ]);
  await Promise.all([
    kt('-exportcert', '-rfc', '-alias', 'ca', '-keystore', p('ca.p12'), '-storepass', storePassword, '-file', p('ca.pem')),
    kt('-exportcert', '-rfc', '-alias', 'ca', '-keystore', p('other-ca.p12'), '-storepass', storePassword, '-file', p('other-ca.pem')),
    kt('-certreq', '-alias', 'broker', '-keystore', p('broker.p12'), '-storepass', storePassword, '-file', p('broker.csr')),
    kt('-certreq', '-alias', 'client', '-keystore', p('client.p12'), '-storepass', storePassword, '-file', p('client.csr')),
  ]);
  const gencert = (csr: string, crt: string, ...ext: string[]) =>
    kt('-gencert', '-rfc', '-alias', 'ca', '-keystore', p('ca.p12'), '-storepass', storePassword, '-infile', p(csr), '-outfile', p(crt), '-validity', '2', ...ext);
  // The broker keystore gets the CA first, then (below) the signed reply; the truststore holds
  // the CA only.
  await Promise.all([
    gencert('broker.csr', 'broker.crt', '-ext', san, '-ext', 'ku:c=digitalSignature,keyEncipherment', '-ext', 'eku=serverAuth,clientAuth'),
    gencert('client.csr', 'client.crt', '-ext', 'ku:c=digitalSignature', '-ext', 'eku=clientAuth'),
    kt('-importcert', '-noprompt', '-alias', 'ca', '-file', p('ca.pem'), '-keystore', p('broker.p12'), '-storepass', storePassword),
    kt('-importcert', '-noprompt', '-alias', 'ca', '-file', p('ca.pem'), '-keystore', p('truststore.p12'), '-storetype', 'PKCS12', '-storepass', storePassword),
  ]);
  await Promise.all([
    kt('-importcert', '-noprompt', '-alias', 'broker', '-file', p('broker.crt'), '-keystore', p('broker.p12'), '-storepass', storePassword),
    // keytool cannot export a private key: OpenSSL reads it from the PKCS#12 store as PEM.
    run('openssl', ['pkcs12', '-in', p('client.p12'), '-nocerts', '-nodes', '-passin', `pass:${storePassword}`, '-out', p('client.bag.pem')], { timeout: 30_000 })
      .then(() => run('openssl', ['pkey', '-in', p('client.bag.pem'), '-out', p('client.key')], { timeout: 30_000 }))
      .then(() => rmSync(p('client.bag.pem'))),
  ]);
  return {
    caFile: p('ca.pem'),
    otherCaFile: p('other-ca.pem'),
    keystore: p('broker.p12'),
    truststore: p('truststore.p12'),
    clientCertFile: p('client.crt'),
    clientKeyFile: p('client.key'),
  };
}

/**
 * Starts a single-node KRaft broker from the jars of `scripts/kafka.sh fetch`: client listener
 * SASL_SSL (SCRAM-SHA-512 only, TLS with the keytool certificates, optionally requiring a client
 * certificate), inter-broker traffic over the same listener as `admin`, controller on PLAINTEXT
 * 127.0.0.1. Users are created when the
 * storage is formatted (`--add-scram`), so they exist before the first client connects.
 */
export async function startSecureKafka(options: SecureKafkaOptions): Promise<SecureKafka> {
  if (!existsSync(LIBS)) {
    throw new Error(`no Kafka jars in ${LIBS}: run \`bash scripts/kafka.sh fetch\``);
  }
  const adminPassword = options.users['admin'];
  if (!adminPassword) throw new Error('users must include admin (the broker authenticates to itself as admin)');
  for (const [name, password] of Object.entries(options.users)) {
    if (!/^[A-Za-z0-9_-]+$/.test(name) || !/^[A-Za-z0-9_-]+$/.test(password)) throw new Error(`user ${name}: use [A-Za-z0-9_-] only`);
  }
  const dir = path.resolve(options.dir);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(path.join(dir, 'data'), { recursive: true });
  const storePassword = randomBytes(12).toString('hex');
  const certs = await makeTestCertificates(path.join(dir, 'tls'), storePassword);

  const listener = `127.0.0.1:${options.port}`;
  const config = path.join(dir, 'server.properties');
  writeFileSync(
    config,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${options.controllerPort}`,
      'controller.listener.names=CONTROLLER',
      `listeners=SASL_SSL://${listener},CONTROLLER://127.0.0.1:${options.controllerPort}`,
      `advertised.listeners=SASL_SSL://localhost:${options.port}`,
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL',
      'inter.broker.listener.name=SASL_SSL',
      'sasl.enabled.mechanisms=SCRAM-SHA-512',
      'sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512',
      `listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${adminPassword}";`,
      `ssl.keystore.location=${certs.keystore}`,
      'ssl.keystore.type=PKCS12',
      `ssl.keystore.password=${storePassword}`,
      `ssl.key.password=${storePassword}`,
      `ssl.truststore.location=${certs.truststore}`,
      'ssl.truststore.type=PKCS12',
      `ssl.truststore.password=${storePassword}`,
      'ssl.endpoint.identification.algorithm=https',
      // On a SASL_SSL listener only the listener-prefixed setting is honoured (KIP-684).
      `listener.name.sasl_ssl.ssl.client.auth=${options.mutualTls ? 'required' : 'none'}`,
      `log.dirs=${path.join(dir, 'data')}`,
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=3',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'default.replication.factor=1',
      'min.insync.replicas=1',
      'num.partitions=2',
      'auto.create.topics.enable=false',
      'group.initial.rebalance.delay.ms=0',
      'message.max.bytes=52428800',
      'replica.fetch.max.bytes=52428800',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const log4j = path.join(dir, 'log4j.properties');
  writeFileSync(
    log4j,
    [
      'log4j.rootLogger=INFO, stdout',
      'log4j.appender.stdout=org.apache.log4j.ConsoleAppender',
      'log4j.appender.stdout.layout=org.apache.log4j.PatternLayout',
      'log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n',
      'log4j.logger.kafka.request.logger=WARN',
      'log4j.logger.state.change.logger=WARN',
      'log4j.logger.org.apache.kafka.clients=WARN',
      '',
    ].join('\n'),
  );

  // Like Kafka's own random ids, never one that starts with '-': the storage tool would read it as
  // an option (1 run in 64 failed with "argument --cluster-id/-t: expected one argument").
  let clusterId = randomBytes(16).toString('base64url');
  while (clusterId.startsWith('-')) clusterId = randomBytes(16).toString('base64url');
  const scram = Object.entries(options.users).flatMap(([name, password]) => ['--add-scram', `SCRAM-SHA-512=[name=${name},password=${password}]`]);
  await run(
    JAVA,
    ['-Xmx256m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', `-Dlog4j.configuration=file:${log4j}`, '-cp', `${LIBS}/*`, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', config, ...scram],
    { timeout: 60_000 },
  );

  const logFile = path.join(dir, 'kafka.log');
  writeFileSync(logFile, '');
  const out = createWriteStream(logFile, { flags: 'a' });
  const broker: ChildProcess = spawn(
    JAVA,
    ['-Xms128m', '-Xmx512m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Djava.awt.headless=true', `-Dlog4j.configuration=file:${log4j}`, `-Dkafka.logs.dir=${dir}`, '-cp', `${LIBS}/*`, 'kafka.Kafka', config],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  broker.stdout?.pipe(out);
  broker.stderr?.pipe(out);
  const stop = () =>
    new Promise<void>((resolve) => {
      if (broker.exitCode !== null || broker.signalCode !== null) return resolve();
      const kill = setTimeout(() => broker.kill('SIGKILL'), 15_000);
      broker.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      broker.kill('SIGTERM');
    });

  const deadline = Date.now() + (options.startTimeoutMs ?? 90_000);
  try {
    while (!/Kafka Server started/.test(readFileSync(logFile, 'utf8'))) {
      if (broker.exitCode !== null) throw new Error(`the secure broker exited (${broker.exitCode}); log: ${logFile}`);
      if (Date.now() > deadline) throw new Error(`the secure broker did not start in time; log: ${logFile}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    await waitForPort(options.port, deadline);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    bootstrap: `localhost:${options.port}`,
    caFile: certs.caFile,
    otherCaFile: certs.otherCaFile,
    clientCertFile: certs.clientCertFile,
    clientKeyFile: certs.clientKeyFile,
    users: { ...options.users },
    dir,
    logFile,
    stop,
  };
}

async function waitForPort(port: number, deadline: number): Promise<void> {
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
