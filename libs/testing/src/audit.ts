import { readFileSync } from 'node:fs';
import type { Admin, Kafka } from 'kafkajs';

/** Records currently held by a topic (high minus low watermark, summed over partitions). */
export async function recordsIn(admin: Admin, topic: string): Promise<number> {
  return (await admin.fetchTopicOffsets(topic)).reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
}

/** Records of `topic` that `groupId` has not committed yet (0 when it is caught up). */
export async function groupLag(admin: Admin, groupId: string, topic: string): Promise<number> {
  const ends = await admin.fetchTopicOffsets(topic);
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
  const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
  let lag = 0;
  for (const e of ends) lag += Number(e.high) - Math.max(Number(e.low), at.get(e.partition) ?? -1);
  return lag;
}

/** Offsets `groupId` has committed on `topic`, summed over partitions (records worked off). */
export async function committedCount(admin: Admin, groupId: string, topic: string): Promise<number> {
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
  return (committed?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
}

/**
 * Every record of a topic a read_committed consumer sees, read with a fresh consumer group:
 * key → count. The offsets bound the count from above only (transaction markers and aborted
 * records take offsets too), so reading ends when that bound is reached or nothing new has
 * arrived for `quietMs` after the first record, or at `timeoutMs`.
 */
export async function countKeys(
  kafka: Kafka,
  admin: Admin,
  topic: string,
  timeoutMs: number,
  quietMs = 5_000,
): Promise<Map<string, number>> {
  const bound = await recordsIn(admin, topic);
  const counts = new Map<string, number>();
  if (bound === 0) return counts;
  let seen = 0;
  let lastAt = Date.now();
  const consumer = kafka.consumer({
    groupId: `thorax-audit-${topic}-${Date.now().toString(36)}`,
    maxBytesPerPartition: 52_428_800,
    readUncommitted: false,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const key = message.key?.toString() ?? '';
      counts.set(key, (counts.get(key) ?? 0) + 1);
      seen += 1;
      lastAt = Date.now();
    },
  });
  const deadline = Date.now() + timeoutMs;
  while (seen < bound && Date.now() < deadline && !(seen > 0 && Date.now() - lastAt >= quietMs)) {
    await new Promise((r) => setTimeout(r, 200));
  }
  await consumer.disconnect();
  return counts;
}

export interface StoredRow {
  id: string;
  status: string;
}

/** Stored results of the given studies, one entry per row, through results' REST list by study. */
export async function storedRows(resultsHttp: string, studies: string[], init: RequestInit = {}): Promise<StoredRow[]> {
  const rows: StoredRow[] = [];
  for (const study of studies) {
    const res = await fetch(`${resultsHttp}/v1/findings?studyUid=${encodeURIComponent(study)}&limit=500`, init);
    if (!res.ok) throw new Error(`GET /v1/findings?studyUid=${study}: ${res.status}`);
    const body = (await res.json()) as { results: StoredRow[]; nextCursor?: string | null };
    if (body.nextCursor) throw new Error(`study ${study} has more than 500 results`);
    rows.push(...body.results.map((r) => ({ id: r.id, status: r.status })));
  }
  return rows;
}

/** A process's peak resident set (VmHWM) in KiB, or null once it is gone. */
export function peakRssKib(pid: number): number | null {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Samples the peak RSS of named processes (each name may be several processes over time, e.g. a
 * service killed and restarted): the highest VmHWM any of them reached, in KiB.
 */
export class PeakRssSampler {
  private readonly pids = new Map<string, Set<number>>();
  private readonly peaks = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  track(name: string, pid: number | undefined): void {
    if (pid === undefined) return;
    const set = this.pids.get(name) ?? new Set<number>();
    set.add(pid);
    this.pids.set(name, set);
  }

  /** Reads every live process now (call right before killing one). */
  sample(): void {
    for (const [name, pids] of this.pids) {
      for (const pid of pids) {
        const kib = peakRssKib(pid);
        if (kib === null) pids.delete(pid);
        else this.peaks.set(name, Math.max(this.peaks.get(name) ?? 0, kib));
      }
    }
  }

  start(intervalMs = 500): void {
    this.timer ??= setInterval(() => this.sample(), intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
  }

  /** Peak RSS per name in MiB. */
  peaksMib(): Map<string, number> {
    return new Map([...this.peaks].map(([name, kib]) => [name, Math.round(kib / 1024)]));
  }
}
