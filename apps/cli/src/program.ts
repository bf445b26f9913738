import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { CliContext } from './context';
import { dlqListCommand, dlqReplayCommand, dlqShowCommand } from './dlq/dlq.command';
import { CliError, EXIT } from './exit-codes';
import { modelsActivateCommand, modelsCanaryCommand, modelsListCommand, modelsShadowCommand } from './models/models.command';
import { publishCommand } from './publish/publish.command';
import { statusCommand } from './status/status.command';
import { CLI_VERSION } from './version';
import { watchCommand } from './watch/watch.command';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function number(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected a number from ${min} to ${max}`);
    return n;
  };
}

function integer(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected a whole number of at least ${min}`);
    return n;
  };
}

const SERVICES_HELP = `
Services (the image's entry point; run in the foreground):
  thorax ingest | preprocess | inference | results   run that service
  thorax topics                                      create or update the topics of topics.conf
  thorax healthcheck [service]                       probe the running service's /healthz

Configuration comes from the services' environment variables: KAFKA_BROKERS, KAFKA_TLS*,
KAFKA_SASL_*, TOPIC_*, and THORAX_INGEST_URL, THORAX_PREPROCESS_URL, THORAX_INFERENCE_URL,
THORAX_RESULTS_URL, THORAX_TOKEN (docs/cli.md).

Exit codes: 0 ok, 1 failure, 2 usage, 3 done but not all ok (an error result, a service not
ready), 4 timed out, 5 token refused (401/403), 78 bad configuration.
`;

export interface ProgramIo {
  env: Record<string, string | undefined>;
  /** Resolves when the user asks to stop (Ctrl-C, SIGTERM). */
  stopSignal: Promise<void>;
  setExitCode(code: number): void;
}

/** The `thorax` command line: every subcommand, its options and help. */
export function buildProgram(io: ProgramIo): Command {
  const program = new Command('thorax')
    .description('Operator CLI of Thorax: publish studies, watch findings, replay dead letters, manage model versions, check status.')
    .version(CLI_VERSION)
    .option('--token <jwt>', 'bearer token for the service APIs (default: THORAX_TOKEN)')
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', SERVICES_HELP)
    .exitOverride();

  const run =
    <A extends unknown[]>(fn: (ctx: CliContext, ...args: A) => Promise<number>) =>
    async (...args: A): Promise<void> => {
      const ctx = CliContext.fromEnv(io.env, program.opts<{ token?: string }>().token);
      try {
        io.setExitCode(await fn(ctx, ...args));
      } finally {
        await ctx.close();
      }
    };

  program
    .command('publish')
    .description('send DICOM, PNG and JPEG files (folders: every such file inside) to the studies topic, as a PACS would')
    .argument('<paths...>', 'files or folders')
    .option('-H, --header <name=value>', 'a Kafka header on every record (repeatable)', collect, [])
    .option('--study-uid <uid>', 'thorax-study-uid header (non-DICOM input; DICOM tags win)')
    .option('--accession <number>', 'thorax-accession header')
    .option('--patient-id <id>', 'thorax-patient-id header')
    .addOption(new Option('--priority <priority>', 'thorax-priority header').choices(['stat', 'routine']))
    .option('--id-from-file-name', 'key every record by its file name, even DICOM (default: the SOP Instance UID)')
    .option('-w, --wait', 'follow the findings topic: print each result as it arrives, then a summary table')
    .option('--timeout <seconds>', 'with --wait: give up after this long (exit 4)', integer(1), 300)
    .option('--json', 'with --wait: print each findings event as one JSON line, no table')
    .option('--no-progress', 'no progress bar')
    .addHelpText('after', '\nIds: the SOP Instance UID of a DICOM file, else the file name without its extension.\nExit: 0 all ok, 3 some ended in an error event, 4 --timeout ran out.')
    .action(run((ctx, paths: string[], options) => publishCommand(ctx, paths, options)));

  program
    .command('watch')
    .description('follow the findings topic and print each event (Ctrl-C stops)')
    .option('-p, --positives', 'only events with a positive finding')
    .option('-l, --label <label>', 'only events where this label is positive (e.g. Effusion)')
    .addOption(new Option('-s, --status <status>', 'only ok or error events').choices(['ok', 'error']))
    .option('--id <id>', 'only this image id (repeatable)', collect, [])
    .option('--json', 'one JSON findings event per line')
    .option('--from-beginning', 'start at the oldest event kept, not at the end')
    .option('-n, --max <count>', 'stop after this many events', integer(1))
    .option('--timeout <seconds>', 'stop after this long (exit 4 when --max was not reached)', integer(1))
    .action(run((ctx, options) => watchCommand(ctx, options, io.stopSignal)));

  const dlq = program.command('dlq').description('inspect dead-letter topics and replay their records after a fix');
  const selectionOptions = (c: Command): Command =>
    c
      .option('-t, --topic <topic>', 'studies, images, tensors, findings or a full DLQ topic name (repeatable; default all)', collect, [])
      .option('--code <code>', 'only this error code (repeatable)', collect, [])
      .option('--stage <stage>', 'only records that failed at this stage (repeatable)', collect, [])
      .option('--key <id>', 'only this record key / image id (repeatable)', collect, []);
  selectionOptions(dlq.command('list').description('count dead letters by DLQ topic, failed stage and error code'))
    .option('-r, --records', 'also list each record (position, key, code, size, replayed)')
    .option('--json', 'one JSON line per record')
    .action(run((ctx, options) => dlqListCommand(ctx, options)));
  dlq
    .command('show')
    .description('one dead letter in full: headers, error, and its value described without the pixel bytes')
    .argument('<position>', '<dlq topic>:<partition>:<offset>, as `dlq list --records` prints it')
    .action(run((ctx, position: string) => dlqShowCommand(ctx, position)));
  selectionOptions(
    dlq
      .command('replay')
      .description('send selected dead letters back to their source topic; each is replayed at most once')
      .argument('[positions...]', 'dead letters by position (else select with --code, --stage, --key or --all)'),
  )
    .option('--all', 'every dead letter of the topics (not yet replayed)')
    .option('--dry-run', 'print what would be replayed; send nothing')
    .option('--rate <per-second>', 'at most this many records per second', number(0.01, 100_000), 10)
    .option('--limit <count>', 'replay at most this many', integer(1))
    .addHelpText(
      'after',
      '\nEach replay and its ledger record (thorax.dlq.replays.v1) are one Kafka transaction, so a rerun,\na crash half-way or a second operator never replays a dead letter twice. Exit 3 when some\nselected records cannot be replayed (their value was not kept).',
    )
    .action(run((ctx, positions: string[], options) => dlqReplayCommand(ctx, positions, options)));

  const models = program.command('models').description("model versions of the inference service (its admin API; needs the admin scope when auth is on)");
  models
    .command('list')
    .description('versions in the model directory and what serves as primary, canary and shadow')
    .option('--json', 'the API answer as JSON')
    .action(run((ctx, options) => modelsListCommand(ctx, options)));
  models
    .command('activate')
    .description('serve this version as the primary on every inference replica (loaded and warmed up before the swap)')
    .argument('[version]', 'a version directory of the model directory')
    .option('--latest', 'unpin: serve the highest version, hot-swapped forward')
    .option('--json', 'the API answer as JSON')
    .action(run((ctx, version: string | undefined, options) => modelsActivateCommand(ctx, version, options)));
  models
    .command('canary')
    .description('send a share of images (by a hash of their id) to a canary version')
    .argument('[version]', 'a version directory')
    .option('--percent <0-100>', 'share of images', number(0, 100))
    .option('--clear', 'no canary')
    .option('--json', 'the API answer as JSON')
    .action(run((ctx, version: string | undefined, options) => modelsCanaryCommand(ctx, version, options)));
  models
    .command('shadow')
    .description('also run a version on every image; its findings go to the shadow topic only')
    .argument('[version]', 'a version directory')
    .option('--clear', 'no shadow')
    .option('--json', 'the API answer as JSON')
    .action(run((ctx, version: string | undefined, options) => modelsShadowCommand(ctx, version, options)));

  program
    .command('status')
    .description('readiness of every service, active model and provider, recent rates and errors, consumer lag')
    .option('-i, --interval <seconds>', 'seconds between the two metrics scrapes the rates come from', number(0.5, 600), 5)
    .option('--group-prefix <prefix>', 'consumer groups to show', 'thorax-')
    .option('--json', 'one JSON document')
    .addHelpText('after', '\nExit: 0 everything ready, 3 a service is not ready or lag is unavailable.')
    .action(run((ctx, options) => statusCommand(ctx, options)));

  for (const c of [program, ...program.commands, ...program.commands.flatMap((c) => c.commands)]) c.exitOverride();
  return program;
}

/** Runs the CLI: parses argv, runs the command, maps failures to exit codes and one line on stderr. */
export async function runCli(argv: string[], io: Omit<ProgramIo, 'setExitCode'>): Promise<number> {
  let exitCode: number = EXIT.OK;
  const program = buildProgram({ ...io, setExitCode: (code) => (exitCode = code) });
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return EXIT.OK;
      // `thorax help` exits 0; a bare `thorax dlq` / `thorax models` prints its help as an error: usage.
      if (error.code === 'commander.help') return error.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
      return EXIT.USAGE;
    }
    if (error instanceof CliError) {
      process.stderr.write(`thorax: ${error.message}\n`);
      return error.exitCode;
    }
    process.stderr.write(`thorax: ${(error as Error).message ?? String(error)}\n`);
    return EXIT.FAILURE;
  }
}
