import type { CliContext } from '../context';
import { EXIT } from '../exit-codes';
import { type FindingsFilter, formatFindingsLine, matchesFilter } from '../format/findings-format';
import { parseFindingsRecord } from './findings-record';

export interface WatchOptions {
  positives?: boolean;
  label?: string;
  status?: 'ok' | 'error';
  id: string[];
  json?: boolean;
  fromBeginning?: boolean;
  /** Stop after this many matching events. */
  max?: number;
  /** Stop after this many seconds. */
  timeout?: number;
}

/** Follows the findings topic and prints matching events until stopped (Ctrl-C), `--max` or `--timeout`. */
export async function watchCommand(ctx: CliContext, options: WatchOptions, stopSignal: Promise<void>): Promise<number> {
  const filter: FindingsFilter = {
    ...(options.positives ? { positives: true } : {}),
    ...(options.label ? { label: options.label } : {}),
    ...(options.status ? { status: options.status } : {}),
    ...(options.id.length > 0 ? { ids: new Set(options.id) } : {}),
  };
  const kafka = ctx.kafka();
  const topic = ctx.config.TOPIC_FINDINGS;
  let count = 0;
  let reachedMax!: () => void;
  const maxReached = new Promise<void>((resolve) => (reachedMax = resolve));
  const reading = await kafka.read(
    topic,
    { from: options.fromBeginning ? 'earliest' : 'latest', until: 'never', groupPrefix: 'thorax-cli-watch' },
    (record) => {
      if (options.max !== undefined && count >= options.max) return;
      const event = parseFindingsRecord(record.value);
      if (!event) {
        ctx.log.warn({ topic, partition: record.partition, offset: record.offset }, 'not a valid findings event; skipped');
        return;
      }
      if (!matchesFilter(event, filter)) return;
      count += 1;
      ctx.print(options.json ? JSON.stringify(event) : formatFindingsLine(event));
      if (options.max !== undefined && count >= options.max) reachedMax();
    },
  );
  if (!options.json) ctx.note(`watching ${topic}${options.fromBeginning ? ' from the beginning' : ''} (Ctrl-C stops)`);
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    maxReached.then(() => 'max' as const),
    stopSignal.then(() => 'stopped' as const),
    reading.done.then(() => 'ended' as const),
    ...(options.timeout !== undefined ? [new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), (options.timeout ?? 0) * 1000)))] : []),
  ]).finally(() => clearTimeout(timer));
  await reading.stop();
  return outcome === 'timeout' && options.max !== undefined ? EXIT.TIMEOUT : EXIT.OK;
}
