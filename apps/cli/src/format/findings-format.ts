import type { FindingsEvent } from '@thorax/contracts';
import { formatMs, percentile, renderTable } from './table';

/** Which findings events `watch` prints. */
export interface FindingsFilter {
  /** Only events with at least one positive label. */
  positives?: boolean;
  /** Only events where this label is positive (case-insensitive). */
  label?: string;
  status?: 'ok' | 'error';
  /** Only events of these image ids. */
  ids?: ReadonlySet<string>;
}

export function matchesFilter(event: FindingsEvent, filter: FindingsFilter): boolean {
  if (filter.status && event.status !== filter.status) return false;
  if (filter.ids && !filter.ids.has(event.id)) return false;
  const positives = event.positives ?? [];
  if (filter.positives && positives.length === 0) return false;
  if (filter.label) {
    const wanted = filter.label.toLowerCase();
    if (!positives.some((p) => p.toLowerCase() === wanted)) return false;
  }
  return true;
}

/** One line per event: time, id, status, model version, positives with probabilities, or the error. */
export function formatFindingsLine(event: FindingsEvent): string {
  const time = event.timing?.completedAt ?? '';
  const model = event.model ? `${event.model.name}@${event.model.version}` : '-';
  if (event.status === 'error') {
    const e = event.error;
    return `${time}  ${event.id}  ERROR  ${e ? `${e.code} (${e.stage}): ${e.message}` : 'unknown error'}`;
  }
  const byLabel = new Map(event.findings.map((f) => [f.label, f.probability]));
  const positives = (event.positives ?? []).map((label) => `${label} ${(byLabel.get(label) ?? 0).toFixed(2)}`);
  const latency = event.timing?.latencyMs !== undefined ? `  ${formatMs(event.timing.latencyMs)}` : '';
  return `${time}  ${event.id}  ok  ${model}${latency}  ${positives.length > 0 ? `positive: ${positives.join(', ')}` : 'no positive finding'}`;
}

/** What `publish --wait` ends with: one row per image in the order published, then totals. */
export function summaryTable(ids: string[], events: ReadonlyMap<string, FindingsEvent>): string {
  const rows = ids.map((id) => {
    const e = events.get(id);
    if (!e) return [id, 'missing', '-', '-', '-'];
    const model = e.model ? e.model.version : '-';
    const latency = e.timing?.latencyMs !== undefined ? formatMs(e.timing.latencyMs) : '-';
    const outcome = e.status === 'error' ? (e.error?.code ?? 'error') : (e.positives ?? []).join(', ') || 'none';
    return [id, e.status, model, latency, outcome];
  });
  const seen = ids.map((id) => events.get(id)).filter((e): e is FindingsEvent => e !== undefined);
  const ok = seen.filter((e) => e.status === 'ok').length;
  const latencies = seen.map((e) => e.timing?.latencyMs).filter((v): v is number => typeof v === 'number');
  const totals =
    `${ids.length} images: ${ok} ok, ${seen.length - ok} error, ${ids.length - seen.length} missing` +
    (latencies.length > 0 ? `; latency p50 ${formatMs(percentile(latencies, 50))}, p95 ${formatMs(percentile(latencies, 95))}` : '');
  return renderTable(['id', 'status', 'model', 'latency', 'positives / error'], rows) + totals + '\n';
}
