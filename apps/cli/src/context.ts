import { ConfigError, kafkaClientOptions, loadConfig } from '@thorax/config';
import { TopicTools } from '@thorax/kafka';
import { createLogger, type Logger } from '@thorax/observability';
import { type CliConfig, cliConfigSchema } from './config';
import { CliError, EXIT } from './exit-codes';
import { CLI_VERSION } from './version';

/** What every command gets: the parsed configuration, a logger on stderr, Kafka and HTTP access. */
export class CliContext {
  readonly log: Logger;
  private tools: TopicTools | null = null;

  constructor(
    readonly config: CliConfig,
    private readonly token: string | undefined,
    readonly out: NodeJS.WritableStream = process.stdout,
    readonly err: NodeJS.WritableStream = process.stderr,
  ) {
    this.log = createLogger({ service: 'cli', version: CLI_VERSION, level: config.LOG_LEVEL }, process.stderr);
  }

  static fromEnv(env: Record<string, string | undefined>, token?: string): CliContext {
    try {
      const config = loadConfig(cliConfigSchema, env);
      return new CliContext(config, token ?? config.THORAX_TOKEN);
    } catch (error) {
      if (error instanceof ConfigError) throw new CliError(EXIT.CONFIG, error.message);
      throw error;
    }
  }

  /** Kafka access, connected on first use. */
  kafka(): TopicTools {
    if (!this.tools) {
      try {
        this.tools = TopicTools.connect(kafkaClientOptions(this.config, this.config.KAFKA_CLIENT_ID ?? 'thorax-cli'), this.log);
      } catch (error) {
        if (error instanceof ConfigError) throw new CliError(EXIT.CONFIG, error.message);
        throw error;
      }
    }
    return this.tools;
  }

  print(text: string): void {
    this.out.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  note(text: string): void {
    this.err.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** An HTTP call to a service: JSON in and out, the bearer token when there is one, a timeout. */
  async http(method: string, url: string, body?: unknown, timeoutMs = this.config.THORAX_HTTP_TIMEOUT_MS): Promise<{ status: number; json: unknown; text: string }> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers['authorization'] = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(EXIT.FAILURE, `${method} ${url}: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    return { status: res.status, json, text };
  }

  async close(): Promise<void> {
    await this.tools?.disconnect();
    this.tools = null;
  }
}

/** The `{ error: { code, message } }` of a service's error answer, else the raw text. */
export function errorMessageOf(answer: { status: number; json: unknown; text: string }): string {
  const e = (answer.json as { error?: { code?: string; message?: string } } | null)?.error;
  return e ? `${e.code ?? answer.status}: ${e.message ?? ''}` : `HTTP ${answer.status} ${answer.text.slice(0, 200)}`;
}

/** 401/403 become exit code 5 with the service's message. */
export function refuseOnAuth(answer: { status: number; json: unknown; text: string }, what: string): void {
  if (answer.status === 401 || answer.status === 403) {
    throw new CliError(EXIT.UNAUTHORIZED, `${what}: ${errorMessageOf(answer)} (set THORAX_TOKEN or --token${answer.status === 403 ? ' with the admin scope' : ''})`);
  }
}
