import { type FindingsEvent, HEADERS } from '@thorax/contracts';
import { Presets, SingleBar } from 'cli-progress';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { CliContext } from '../context';
import { CliError, EXIT, usageError } from '../exit-codes';
import { formatBytes } from '../format/table';
import { formatFindingsLine, summaryTable } from '../format/findings-format';
import { parseFindingsRecord } from '../watch/findings-record';
import { collectInputs, parseHeader } from './input-files';

export interface PublishOptions {
  header: string[];
  studyUid?: string;
  accession?: string;
  patientId?: string;
  priority?: 'stat' | 'routine';
  idFromFileName?: boolean;
  wait?: boolean;
  timeout: number;
  json?: boolean;
  progress: boolean;
}

/** A fresh W3C traceparent, so each image can be followed through every stage's logs. */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
}

/** Sends files to the studies topic as a PACS would; with `wait`, follows the findings topic until each has its event. */
export async function publishCommand(ctx: CliContext, paths: string[], options: PublishOptions): Promise<number> {
  const { files, skipped } = await collectInputs(paths, { idFromFileName: options.idFromFileName ?? false });
  for (const s of skipped) ctx.note(`skipped ${s}: not a DICOM, PNG or JPEG file`);
  if (files.length === 0) throw usageError('nothing to publish: no DICOM, PNG or JPEG file in the paths given');
  const common: Record<string, string> = Object.fromEntries(options.header.map(parseHeader));
  if (options.studyUid) common[HEADERS.studyUid] = options.studyUid;
  if (options.accession) common[HEADERS.accession] = options.accession;
  if (options.patientId) common[HEADERS.patientId] = options.patientId;
  if (options.priority) common[HEADERS.priority] = options.priority;
  const topic = ctx.config.TOPIC_STUDIES;
  const findingsTopic = ctx.config.TOPIC_FINDINGS;
  const kafka = ctx.kafka();
  if (!(await kafka.topicExists(topic))) throw new CliError(EXIT.FAILURE, `topic ${topic} does not exist on ${ctx.config.KAFKA_BROKERS.join(',')}`);

  const ids = files.map((f) => f.id);
  const wanted = new Set(ids);
  const events = new Map<string, FindingsEvent>();
  let allArrived!: () => void;
  const arrived = new Promise<void>((resolve) => (allArrived = resolve));
  // Follow findings from the end as it is before the first send: no event of ours can be missed.
  const reading = options.wait
    ? await kafka.read(
        findingsTopic,
        { from: new Map((await kafka.offsets(findingsTopic)).map((o) => [o.partition, o.high])), until: 'never', groupPrefix: 'thorax-cli-wait' },
        (record) => {
          const event = parseFindingsRecord(record.value);
          if (!event || !wanted.has(event.id) || events.has(event.id)) return;
          events.set(event.id, event);
          ctx.print(options.json ? JSON.stringify(event) : formatFindingsLine(event));
          if (events.size === wanted.size) allArrived();
        },
      )
    : null;

  const bar = options.progress && (ctx.err as NodeJS.WriteStream).isTTY
    ? new SingleBar({ stream: ctx.err, format: 'publishing [{bar}] {value}/{total} | {file}', hideCursor: true, clearOnComplete: true }, Presets.shades_classic)
    : null;
  bar?.start(files.length, 0, { file: '' });
  let bytes = 0;
  const started = Date.now();
  try {
    for (const file of files) {
      const value = await readFile(file.path);
      bytes += value.length;
      await kafka.send([
        {
          topic,
          key: file.id,
          value,
          headers: { [HEADERS.contentType]: file.contentType, traceparent: newTraceparent(), ...common },
        },
      ]);
      bar?.increment(1, { file: file.path });
      if (!bar && !options.json) ctx.note(`published ${file.id} (${file.path}, ${formatBytes(file.size)}, id from ${file.idFrom})`);
    }
  } finally {
    bar?.stop();
  }
  ctx.note(`published ${files.length} image(s), ${formatBytes(bytes)}, to ${topic} in ${Date.now() - started} ms`);
  if (!reading) return EXIT.OK;

  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    arrived.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), options.timeout * 1000))),
    reading.done.then(() => false),
  ]).finally(() => clearTimeout(timer));
  await reading.stop();
  if (!options.json) ctx.print(`\n${summaryTable(ids, events)}`);
  if (timedOut || events.size < wanted.size) {
    ctx.note(`timed out after ${options.timeout} s: ${wanted.size - events.size} of ${wanted.size} image(s) have no findings event yet`);
    return EXIT.TIMEOUT;
  }
  return [...events.values()].some((e) => e.status !== 'ok') ? EXIT.NOT_OK : EXIT.OK;
}
