import { z } from 'zod';
import { ConfigError } from './config-error';
import { kafkaEnv, kafkaEnvProblems } from './kafka-env';
import { apiSecurityEnv, apiSecurityProblems } from './api-security';
import { objectStoreEnv, objectStoreEnvProblems } from './object-store-env';
import { TOPIC_NAMES } from './topic-names';

export { ConfigError } from './config-error';
export { flag, list, port, positiveInt } from './env-types';

/**
 * Parses environment variables once, at start-up, into a typed object. A bad value throws a
 * ConfigError naming every offending variable; nothing else in an app reads process.env.
 * Schemas that include the shared Kafka variables also get their cross-variable rules checked.
 */
export function loadConfig<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const variable = issue.path.join('.') || '(environment)';
      return `${variable}: ${issue.message} (got ${describeValue(variable, env[String(issue.path[0])])})`;
    });
    throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  const data = parsed.data as Record<string, unknown>;
  if (typeof data === 'object' && data !== null && 'KAFKA_SASL_MECHANISM' in data) {
    const problems = kafkaEnvProblems(data).map((p) => `${p.variable}: ${p.message}`);
    if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  if (typeof data === 'object' && data !== null && 'OBJECT_STORE_URL' in data) {
    const problems = objectStoreEnvProblems(data).map((p) => `${p.variable}: ${p.message}`);
    if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  const securityProblems = typeof data === 'object' && data !== null ? apiSecurityProblems(data) : [];
  if (securityProblems.length > 0) throw new ConfigError(`invalid configuration:\n  ${securityProblems.join('\n  ')}`);
  return parsed.data;
}

/** The offending value for the message; secrets are never echoed. */
function describeValue(variable: string, value: string | undefined): string {
  if (value !== undefined && /PASSWORD|SECRET|TOKEN|_KEY$/.test(variable) && !variable.endsWith('_FILE')) {
    return '[redacted]';
  }
  return JSON.stringify(value ?? null);
}

/** Variables every Thorax service shares (docs/contract.md, Configuration). */
export const sharedEnv = {
  ...kafkaEnv,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  TOPIC_STUDIES: z.string().min(1).default(TOPIC_NAMES.studies),
  TOPIC_IMAGES: z.string().min(1).default(TOPIC_NAMES.images),
  TOPIC_TENSORS: z.string().min(1).default(TOPIC_NAMES.tensors),
  TOPIC_FINDINGS: z.string().min(1).default(TOPIC_NAMES.findings),
  /** Longest drain after SIGTERM before the process exits anyway, ms (keep below the grace period). */
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().positive().default(30_000),
  ...apiSecurityEnv,
  ...objectStoreEnv,
};

export { z };
