import { HEADERS } from '@thorax/contracts';
import type { TopicRecord } from '@thorax/kafka';
import { usageError } from '../exit-codes';
import { renderTable } from '../format/table';

/** A record position: `<topic>:<partition>:<offset>`. */
export interface Position {
  topic: string;
  partition: number;
  offset: string;
}

export const REPLAY_HEADER = 'thorax-replay-of';
export const REPLAY_SCHEMA = 'thorax.dlq.replay.v1';

/** What `dlq list` knows of one dead letter (never the value itself). */
export interface DlqEntry extends Position {
  key: string | null;
  code: string;
  stage: string;
  message: string;
  timestamp: number;
  /** Bytes of the value in the DLQ (0 when the DLQ had to drop it). */
  size: number;
  /** The original value's size when the DLQ record had to go without it (not replayable). */
  valueOmitted: number | null;
  headers: Record<string, string>;
}

export function positionText(p: Position): string {
  return `${p.topic}:${p.partition}:${p.offset}`;
}

/** `topic:partition:offset` (topic names contain dots, never colons). */
export function parsePosition(text: string): Position {
  const m = /^([A-Za-z0-9._-]+):(\d{1,9}):(\d{1,19})$/.exec(text.trim());
  if (!m) throw usageError(`${JSON.stringify(text)}: expected <dlq topic>:<partition>:<offset>, e.g. thorax.studies.v1.dlq:0:12`);
  return { topic: m[1] as string, partition: Number(m[2]), offset: BigInt(m[3] as string).toString() };
}

/** The topic a dead letter came from: its DLQ topic without `.dlq`. */
export function sourceTopicOf(dlqTopic: string): string {
  if (!dlqTopic.endsWith('.dlq')) throw usageError(`${dlqTopic} is not a dead-letter topic (no .dlq suffix)`);
  return dlqTopic.slice(0, -'.dlq'.length);
}

export function dlqEntryOf(record: TopicRecord): DlqEntry {
  const h = record.headers;
  const omitted = h[HEADERS.valueOmitted];
  return {
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    key: record.key,
    code: h[HEADERS.errorCode] ?? 'UNKNOWN',
    stage: h[HEADERS.failedStage] ?? 'unknown',
    message: h[HEADERS.errorMessage] ?? '',
    timestamp: record.timestamp,
    size: record.value?.length ?? 0,
    valueOmitted: omitted !== undefined && /^\d+$/.test(omitted) ? Number(omitted) : null,
    headers: h,
  };
}

/** Selection of dead letters for `list --records` and `replay`. */
export interface DlqSelection {
  code?: string[];
  stage?: string[];
  key?: string[];
  positions?: Position[];
}

export function selects(entry: DlqEntry, s: DlqSelection): boolean {
  if (s.code?.length && !s.code.includes(entry.code)) return false;
  if (s.stage?.length && !s.stage.includes(entry.stage)) return false;
  if (s.key?.length && (entry.key === null || !s.key.includes(entry.key))) return false;
  if (s.positions?.length && !s.positions.some((p) => p.topic === entry.topic && p.partition === entry.partition && p.offset === entry.offset)) return false;
  return true;
}

/** Counts by DLQ topic, failed stage and error code, largest first, with how many are already replayed. */
export function summarize(entries: DlqEntry[], replayed: ReadonlySet<string>): string {
  const groups = new Map<string, { topic: string; stage: string; code: string; count: number; replayed: number; newest: number }>();
  for (const e of entries) {
    const k = `${e.topic}\n${e.stage}\n${e.code}`;
    const g = groups.get(k) ?? { topic: e.topic, stage: e.stage, code: e.code, count: 0, replayed: 0, newest: 0 };
    g.count += 1;
    if (replayed.has(positionText(e))) g.replayed += 1;
    g.newest = Math.max(g.newest, e.timestamp);
    groups.set(k, g);
  }
  const rows = [...groups.values()]
    .sort((a, b) => b.count - a.count || a.topic.localeCompare(b.topic) || a.code.localeCompare(b.code))
    .map((g) => [g.topic, g.stage, g.code, g.count, g.replayed, new Date(g.newest).toISOString()]);
  return renderTable(['dlq topic', 'stage', 'error code', 'records', 'replayed', 'newest'], rows, ['left', 'left', 'left', 'right', 'right', 'left']);
}

/** Headers of the replayed record: the original ones without the dead-letter headers, plus where it was replayed from. */
export function replayHeaders(entry: DlqEntry): Record<string, string> {
  const dropped = new Set<string>([HEADERS.errorCode, HEADERS.errorMessage, HEADERS.failedStage, HEADERS.valueOmitted, REPLAY_HEADER]);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(entry.headers)) if (!dropped.has(name)) out[name] = value;
  out[REPLAY_HEADER] = positionText(entry);
  return out;
}

/** The ledger record written with a replay, keyed by the dead letter's position. */
export function ledgerValue(entry: DlqEntry, to: string, now = new Date()): Buffer {
  return Buffer.from(
    JSON.stringify({ schema: REPLAY_SCHEMA, dlq: { topic: entry.topic, partition: entry.partition, offset: entry.offset }, to, key: entry.key, code: entry.code, replayedAt: now.toISOString() }),
  );
}

/** Paces calls to at most `perSecond` (0 or Infinity: no limit). */
export class RateLimiter {
  private next = 0;

  constructor(
    private readonly perSecond: number,
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  async take(): Promise<void> {
    if (!(this.perSecond > 0) || !Number.isFinite(this.perSecond)) return;
    const t = this.now();
    const wait = this.next - t;
    this.next = Math.max(t, this.next) + 1000 / this.perSecond;
    if (wait > 0) await this.sleep(wait);
  }
}
