import type { TopicReading, TopicRecord } from '@thorax/kafka';
import type { CliContext } from '../context';
import { CliError, EXIT, usageError } from '../exit-codes';
import { formatBytes, renderTable } from '../format/table';
import {
  type DlqEntry,
  dlqEntryOf,
  type DlqSelection,
  ledgerValue,
  parsePosition,
  positionText,
  RateLimiter,
  replayHeaders,
  selects,
  sourceTopicOf,
  summarize,
} from './dlq-records';
import { describeValue } from './record-view';

/** The transactional id of replays: one replay runs at a time per cluster (a second one fences the first). */
export const REPLAY_TRANSACTIONAL_ID = 'thorax-cli-dlq-replay';

export interface DlqTopicsOption {
  topic: string[];
}

/** `--topic studies|images|tensors|findings|<full name>`, default all four DLQs. */
export function dlqTopics(ctx: CliContext, names: string[]): string[] {
  const c = ctx.config;
  const byName: Record<string, string> = { studies: c.TOPIC_STUDIES, images: c.TOPIC_IMAGES, tensors: c.TOPIC_TENSORS, findings: c.TOPIC_FINDINGS };
  const picked = names.length > 0 ? names : Object.keys(byName);
  return picked.map((n) => {
    const base = byName[n] ?? n;
    return base.endsWith('.dlq') ? base : `${base}.dlq`;
  });
}

/** Reads the replay ledger: the positions of every dead letter already replayed. */
async function replayedPositions(ctx: CliContext): Promise<Set<string>> {
  const kafka = ctx.kafka();
  const topic = ctx.config.THORAX_DLQ_REPLAYS_TOPIC;
  if (!(await kafka.topicExists(topic))) throw new CliError(EXIT.FAILURE, `replay ledger topic ${topic} does not exist (create it with \`thorax topics\`)`);
  const done = new Set<string>();
  const reading = await kafka.read(topic, { from: 'earliest', until: 'end', groupPrefix: 'thorax-cli-ledger' }, (r) => {
    if (r.key && r.value) done.add(r.key);
  });
  await reading.done;
  return done;
}

/** Reads DLQ topics to their current end; `keep` decides which records keep their value (for replay). */
async function readDlqs(ctx: CliContext, topics: string[], keep: (e: DlqEntry) => boolean = () => false): Promise<{ entries: DlqEntry[]; values: Map<string, TopicRecord> }> {
  const kafka = ctx.kafka();
  const entries: DlqEntry[] = [];
  const values = new Map<string, TopicRecord>();
  for (const topic of topics) {
    if (!(await kafka.topicExists(topic))) {
      ctx.note(`${topic}: no such topic, skipped`);
      continue;
    }
    const reading = await kafka.read(topic, { from: 'earliest', until: 'end', groupPrefix: 'thorax-cli-dlq', maxBytesPerPartition: 64 * 1024 * 1024 }, (r) => {
      const entry = dlqEntryOf(r);
      entries.push(entry);
      if (keep(entry)) values.set(positionText(entry), r);
    });
    await reading.done;
  }
  entries.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
  return { entries, values };
}

export interface ListOptions extends DlqTopicsOption, DlqSelectionOptions {
  records?: boolean;
  json?: boolean;
}

export interface DlqSelectionOptions {
  code: string[];
  stage: string[];
  key: string[];
}

function selectionOf(options: DlqSelectionOptions, positions: string[] = []): DlqSelection {
  return { code: options.code, stage: options.stage, key: options.key, positions: positions.map(parsePosition) };
}

export async function dlqListCommand(ctx: CliContext, options: ListOptions): Promise<number> {
  const selection = selectionOf(options);
  const replayed = await replayedPositions(ctx);
  const { entries } = await readDlqs(ctx, dlqTopics(ctx, options.topic));
  const chosen = entries.filter((e) => selects(e, selection));
  if (options.json) {
    for (const e of chosen) {
      const { headers: _headers, ...rest } = e;
      ctx.print(JSON.stringify({ ...rest, position: positionText(e), replayed: replayed.has(positionText(e)) }));
    }
    return EXIT.OK;
  }
  if (chosen.length === 0) {
    ctx.print('no dead letters');
    return EXIT.OK;
  }
  ctx.print(summarize(chosen, replayed));
  if (options.records) {
    const rows = chosen.map((e) => [positionText(e), e.key ?? '-', e.stage, e.code, formatBytes(e.size), replayed.has(positionText(e)) ? 'yes' : 'no', e.message.slice(0, 80)]);
    ctx.print(`\n${renderTable(['position', 'key', 'stage', 'error code', 'size', 'replayed', 'message'], rows)}`);
  }
  return EXIT.OK;
}

export async function dlqShowCommand(ctx: CliContext, positionArg: string): Promise<number> {
  const position = parsePosition(positionArg);
  const kafka = ctx.kafka();
  if (!(await kafka.topicExists(position.topic))) throw new CliError(EXIT.FAILURE, `${position.topic}: no such topic`);
  const offsets = (await kafka.offsets(position.topic)).find((o) => o.partition === position.partition);
  const at = BigInt(position.offset);
  if (!offsets || at < offsets.low || at >= offsets.high) {
    throw new CliError(EXIT.FAILURE, `${positionArg}: no such record (partition ${position.partition} holds offsets ${offsets ? `${offsets.low}..${offsets.high - 1n}` : 'none'})`);
  }
  let found: TopicRecord | null = null;
  let reading: TopicReading | undefined = undefined;
  reading = await kafka.read(
    position.topic,
    { from: new Map([[position.partition, at]]), until: 'end', groupPrefix: 'thorax-cli-dlq', maxBytesPerPartition: 64 * 1024 * 1024 },
    (r) => {
      if (r.partition === position.partition && r.offset === position.offset) {
        found = r;
        void reading?.stop();
      }
    },
  );
  await reading.done;
  const record = found as TopicRecord | null;
  if (!record) throw new CliError(EXIT.FAILURE, `${positionArg}: not found (compacted away or a transaction marker)`);
  const entry = dlqEntryOf(record);
  const replayed = await replayedPositions(ctx).catch(() => null);
  const lines = [
    `position   ${positionText(entry)}`,
    `key        ${entry.key ?? '(none)'}`,
    `time       ${new Date(entry.timestamp).toISOString()}`,
    `error      ${entry.code} at ${entry.stage}: ${entry.message}`,
    `source     ${sourceTopicOf(entry.topic)}`,
    `replayed   ${replayed === null ? 'unknown (no ledger)' : replayed.has(positionText(entry)) ? 'yes' : 'no'}`,
    'headers',
    ...Object.entries(entry.headers).map(([k, v]) => `           ${k}: ${v}`),
    ...describeValue(entry.topic, record.value, entry.valueOmitted),
  ];
  ctx.print(lines.join('\n'));
  return EXIT.OK;
}

export interface ReplayOptions extends DlqTopicsOption, DlqSelectionOptions {
  dryRun?: boolean;
  rate: number;
  limit?: number;
  all?: boolean;
}

/**
 * Replays selected dead letters to their source topic, each in one Kafka transaction with its
 * ledger record, so a dead letter is never replayed twice (by a rerun, a crash half-way, or a
 * second operator: the transactional id fences the older replay).
 */
export async function dlqReplayCommand(ctx: CliContext, positions: string[], options: ReplayOptions): Promise<number> {
  const selection = selectionOf(options, positions);
  if (!options.all && !selection.positions?.length && !selection.code?.length && !selection.stage?.length && !selection.key?.length) {
    throw usageError('say which dead letters to replay: positions, --code, --stage, --key, or --all');
  }
  const topics = selection.positions?.length ? [...new Set(selection.positions.map((p) => p.topic))] : dlqTopics(ctx, options.topic);
  const kafka = ctx.kafka();
  // Fence any other replay first, so the ledger read next holds everything it committed.
  if (!options.dryRun) await kafka.beginTransactions(REPLAY_TRANSACTIONAL_ID);
  const replayed = await replayedPositions(ctx);
  const { entries, values } = await readDlqs(ctx, topics, (e) => selects(e, selection) && !replayed.has(positionText(e)));
  const chosen = entries.filter((e) => selects(e, selection));
  const missing = (selection.positions ?? []).filter((p) => !chosen.some((e) => positionText(e) === positionText(p)));
  for (const p of missing) ctx.note(`${positionText(p)}: no such dead letter`);
  const limiter = new RateLimiter(options.rate);
  let done = 0;
  let skipped = 0;
  let failed = 0;
  for (const entry of chosen) {
    if (options.limit !== undefined && done >= options.limit) break;
    const at = positionText(entry);
    const to = sourceTopicOf(entry.topic);
    if (replayed.has(at)) {
      skipped += 1;
      ctx.print(`skip     ${at}  ${entry.key ?? '-'}  already replayed`);
      continue;
    }
    const record = values.get(at);
    if (!record?.value || entry.valueOmitted !== null) {
      failed += 1;
      ctx.print(`cannot   ${at}  ${entry.key ?? '-'}  the DLQ holds no value (original ${entry.valueOmitted ?? 0} bytes); republish it from its source`);
      continue;
    }
    if (options.dryRun) {
      done += 1;
      ctx.print(`would    ${at}  ${entry.key ?? '-'}  ${entry.code} -> ${to} (${formatBytes(record.value.length)})`);
      continue;
    }
    await limiter.take();
    const value = record.value;
    await kafka.inTransaction(async (tx) => {
      await tx.send([
        { topic: to, key: entry.key, value, headers: replayHeaders(entry) },
        { topic: ctx.config.THORAX_DLQ_REPLAYS_TOPIC, key: at, value: ledgerValue(entry, to) },
      ]);
    });
    replayed.add(at);
    done += 1;
    ctx.print(`replayed ${at}  ${entry.key ?? '-'}  ${entry.code} -> ${to}`);
  }
  ctx.note(`${options.dryRun ? 'would replay' : 'replayed'} ${done}, already replayed ${skipped}, not replayable ${failed}, of ${chosen.length} selected`);
  if (missing.length > 0) return EXIT.FAILURE;
  return failed > 0 ? EXIT.NOT_OK : EXIT.OK;
}
