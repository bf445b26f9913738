/** Exit codes of the `thorax` CLI (docs/cli.md "Exit codes"). */
export const EXIT = {
  /** Done, and everything it checked or waited for was fine. */
  OK: 0,
  /** The operation failed (broker or service unreachable, refused, an error answer). */
  FAILURE: 1,
  /** Bad command line: unknown command or option, missing or malformed argument. */
  USAGE: 2,
  /** Done, but the outcome is not all good: an image ended in an error event, a service is not ready. */
  NOT_OK: 3,
  /** `--wait` or `--timeout` ran out before everything arrived. */
  TIMEOUT: 4,
  /** The API refused the token (401 or 403). */
  UNAUTHORIZED: 5,
  /** Bad configuration (an environment variable, a TLS or password file). */
  CONFIG: 78,
} as const;

/** A failure that ends the command with its exit code and a one-line message on stderr. */
export class CliError extends Error {
  override readonly name = 'CliError';

  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

export const usageError = (message: string): CliError => new CliError(EXIT.USAGE, message);
