import type { KafkaClientOptions } from './kafka-client';
import { kafkaErrorType } from './kafka-errors';

/**
 * Why a service cannot use its Kafka cluster. `authentication`, `authorization` and `tls` are
 * configuration problems that retrying will not fix (wrong secret, missing ACL, wrong CA or
 * server name); `unreachable` is transient (brokers down, network), retried quietly.
 */
export type KafkaFailureKind = 'authentication' | 'authorization' | 'tls' | 'unreachable';

export interface KafkaFailure {
  kind: KafkaFailureKind;
  /** Short, secret-free, for /readyz: `kafka: authentication failed (SCRAM-SHA-512)`. */
  reason: string;
  /** The variables an operator should check. */
  check: string[];
  /** The underlying error's message (never holds a secret: kafkajs and Node do not echo them). */
  detail: string;
}

/** Node/OpenSSL error codes of a failed certificate check or TLS handshake. */
const TLS_CODES = /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|HOSTNAME_MISMATCH$|INVALID_CA$|INVALID_PURPOSE$|CERT_UNTRUSTED$|CERT_REJECTED$|EPROTO$)/;

const AUTHORIZATION_TYPES = new Set([
  'TOPIC_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'DELEGATION_TOKEN_AUTHORIZATION_FAILED',
]);

const AUTHENTICATION_TYPES = new Set(['SASL_AUTHENTICATION_FAILED', 'UNSUPPORTED_SASL_MECHANISM', 'ILLEGAL_SASL_STATE', '_AUTHENTICATION']);

interface ErrorLike {
  name?: string;
  message?: string;
  code?: string | number;
  type?: string;
  cause?: unknown;
  originalError?: unknown;
}

/** The error and its causes (kafkajs wraps the last attempt's error when it gives up). */
function chain(error: unknown): ErrorLike[] {
  const errors: ErrorLike[] = [];
  let current: unknown = error;
  while (current && typeof current === 'object' && errors.length < 8 && !errors.includes(current as ErrorLike)) {
    const e = current as ErrorLike;
    errors.push(e);
    current = e.cause ?? e.originalError;
  }
  return errors;
}

/** Classifies a connect or send failure, naming what to check without echoing any secret. */
export function classifyKafkaFailure(error: unknown, options: Pick<KafkaClientOptions, 'tls' | 'sasl'>): KafkaFailure {
  const errors = chain(error);
  const detail = errors.map((e) => e.message).find((m) => m) ?? String(error);
  const mechanism = options.sasl ? options.sasl.mechanism.toUpperCase() : 'none';
  const passwordVariables = ['KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD_FILE (or KAFKA_SASL_PASSWORD)'];

  const types = errors.map((e) => kafkaErrorType(e) ?? '');
  if (
    errors.some(
      (e, i) => e.name === 'KafkaJSSASLAuthenticationError' || AUTHENTICATION_TYPES.has(types[i] as string) || RDKAFKA_AUTHENTICATION.test(e.message ?? ''),
    )
  ) {
    const unsupported = errors.some(
      (e, i) => types[i] === 'UNSUPPORTED_SASL_MECHANISM' || /not supported by the server|does not support|not supported by broker|unsupported sasl mechanism/i.test(e.message ?? ''),
    );
    return unsupported
      ? { kind: 'authentication', reason: `kafka: SASL mechanism ${mechanism} not enabled on the broker`, check: ['KAFKA_SASL_MECHANISM'], detail }
      : { kind: 'authentication', reason: `kafka: authentication failed (${mechanism})`, check: [...passwordVariables, 'KAFKA_SASL_MECHANISM'], detail };
  }
  const denied = types.find((type) => AUTHORIZATION_TYPES.has(type));
  if (denied) {
    return {
      kind: 'authorization',
      reason: `kafka: not authorized (${denied})`,
      check: ['the ACLs of KAFKA_SASL_USERNAME (or of the client certificate)'],
      detail,
    };
  }
  const tls = errors.find((e) => typeof e.code === 'string' && TLS_CODES.test(e.code));
  if (tls) return tlsFailure(String(tls.code), detail, options);
  // librdkafka: one local code for every TLS failure, the OpenSSL reason in the message.
  const rdkafkaTls = errors.find((e, i) => types[i] === '_SSL' || rdkafkaTlsCode(e.message ?? '') !== null);
  if (rdkafkaTls) return tlsFailure(rdkafkaTlsCode(rdkafkaTls.message ?? '') ?? 'ERR_SSL_HANDSHAKE_FAILURE', detail, options);
  return { kind: 'unreachable', reason: `kafka: brokers unreachable (${detail})`, check: ['KAFKA_BROKERS'], detail };
}

/**
 * A socket error seen by the client's transport hook (kafkajs) or an error line of librdkafka: a
 * TLS or (librdkafka) authentication failure, or null when it is neither.
 */
export function classifySocketError(error: Error, options: Pick<KafkaClientOptions, 'tls' | 'sasl'>): KafkaFailure | null {
  const code = (error as ErrorLike).code;
  if (typeof code === 'string' && TLS_CODES.test(code)) return tlsFailure(code, error.message, options);
  const rdkafka = rdkafkaTlsCode(error.message);
  if (rdkafka) return tlsFailure(rdkafka, error.message, options);
  if (RDKAFKA_AUTHENTICATION.test(error.message)) return classifyKafkaFailure(error, { tls: options.tls ?? null, sasl: options.sasl ?? null });
  return null;
}

/** librdkafka's words for a failed SASL authentication (its error code is not always kept). */
const RDKAFKA_AUTHENTICATION = /^(Local: )?Authentication failure|SASL authentication error|SASL handshake failed/i;

/**
 * The Node/OpenSSL code that names the TLS failure a librdkafka error message describes (it
 * reports them all as ERR__SSL, or as a broken connection for a plaintext client at a TLS
 * listener); null when the message is not about TLS.
 */
export function rdkafkaTlsCode(message: string): string | null {
  if (/incorrect security\.protocol configuration \(connecting to a SSL listener\?\)/i.test(message)) return 'EPROTO';
  if (!/SSL|TLS|certificate/i.test(message)) return null;
  if (/wrong version number|packet length too long|record layer failure|http request/i.test(message)) return 'ERR_SSL_WRONG_VERSION_NUMBER';
  if (/hostname mismatch|does not match|endpoint identification|IP address mismatch/i.test(message)) return 'ERR_TLS_CERT_ALTNAME_INVALID';
  if (/alert certificate required/i.test(message)) return 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED';
  if (/alert (handshake failure|bad certificate|unknown ca|certificate unknown)/i.test(message)) return 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE';
  if (/self.signed certificate in certificate chain/i.test(message)) return 'SELF_SIGNED_CERT_IN_CHAIN';
  if (/certificate verify failed|unable to get local issuer|could not be verified/i.test(message)) return 'UNABLE_TO_VERIFY_LEAF_SIGNATURE';
  if (/ssl handshake failed|ssl\.(ca|certificate|key)|ssl_ctx|failed to (read|load)/i.test(message)) return 'ERR_SSL_HANDSHAKE_FAILURE';
  return null;
}

function tlsFailure(code: string, detail: string, options: Pick<KafkaClientOptions, 'tls'>): KafkaFailure {
  const check = !options.tls
    ? ['KAFKA_TLS (the broker listener may not be TLS, or it is and KAFKA_TLS is false)']
    : code === 'ERR_SSL_WRONG_VERSION_NUMBER'
      ? ['KAFKA_TLS (the broker listener is not TLS)', 'KAFKA_BROKERS']
      : code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH'
        ? ['KAFKA_TLS_SERVERNAME', 'KAFKA_BROKERS']
        : /ALERT|HANDSHAKE_FAILURE|CERTIFICATE_REQUIRED/.test(code)
          ? ['KAFKA_TLS_CERT_FILE', 'KAFKA_TLS_KEY_FILE', 'KAFKA_TLS_CA_FILE']
          : ['KAFKA_TLS_CA_FILE', 'KAFKA_TLS_SERVERNAME'];
  return { kind: 'tls', reason: `kafka: TLS handshake failed (${code})`, check, detail };
}
