import { z } from 'zod';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Parses environment variables once, at start-up, into a typed object. A bad value throws a
 * ConfigError naming every offending variable; nothing else in an app reads process.env.
 */
export function loadConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined>,
): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const variable = issue.path.join('.') || '(environment)';
      return `${variable}: ${issue.message} (got ${JSON.stringify(env[String(issue.path[0])] ?? null)})`;
    });
    throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  return parsed.data;
}

/** A TCP port given as an environment string. */
export const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);

/** A positive integer given as an environment string. */
export const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

/** A boolean given as an environment string: true/false/1/0/yes/no. */
export const flag = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** Comma-separated list. */
export const list = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    );

/** Variables every Thorax service shares (DESIGN.md, Configuration). */
export const sharedEnv = {
  KAFKA_BROKERS: list('127.0.0.1:9092').pipe(z.array(z.string().regex(/^[^:\s]+:\d+$/, 'expected host:port')).min(1)),
  KAFKA_CLIENT_ID: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  TOPIC_STUDIES: z.string().min(1).default('thorax.studies.v1'),
  TOPIC_IMAGES: z.string().min(1).default('thorax.images.v1'),
  TOPIC_TENSORS: z.string().min(1).default('thorax.tensors.v1'),
  TOPIC_FINDINGS: z.string().min(1).default('thorax.findings.v1'),
};

export { z };
