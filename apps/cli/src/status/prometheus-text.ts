/** One sample of the Prometheus text format. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses the Prometheus text exposition format (comments and malformed lines skipped). */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1] as string] = (l[2] as string).replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (!Number.isNaN(value) || m[3] === 'NaN') samples.push({ name: m[1] as string, labels, value });
  }
  return samples;
}

/** Sum of the samples of `name` whose labels include `match`. */
export function sumOf(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((total, s) => total + s.value, 0);
}

/** Per-second rates between two scrapes of a service, from thorax_messages_total and thorax_errors_total. */
export interface ServiceRates {
  /** Records handled per second (every outcome). */
  messagesPerSecond: number;
  deadLetteredPerSecond: number;
  retriedPerSecond: number;
  /** Share of handled records that were dead-lettered, 0..1 (NaN when none were handled). */
  deadLetterShare: number;
  /** Error events per second by "stage/code", only those that grew. */
  errors: Record<string, number>;
}

export function ratesBetween(before: Sample[], after: Sample[], seconds: number): ServiceRates {
  const delta = (name: string, match: Record<string, string> = {}) => Math.max(0, sumOf(after, name, match) - sumOf(before, name, match));
  const total = delta('thorax_messages_total');
  const dead = delta('thorax_messages_total', { outcome: 'dead_lettered' });
  const retried = delta('thorax_messages_total', { outcome: 'retried' });
  const errors: Record<string, number> = {};
  for (const s of after.filter((x) => x.name === 'thorax_errors_total')) {
    const key = `${s.labels['stage'] ?? '?'}/${s.labels['code'] ?? '?'}`;
    const d = delta('thorax_errors_total', { stage: s.labels['stage'] ?? '', code: s.labels['code'] ?? '' });
    if (d > 0) errors[key] = d / seconds;
  }
  return {
    messagesPerSecond: total / seconds,
    deadLetteredPerSecond: dead / seconds,
    retriedPerSecond: retried / seconds,
    deadLetterShare: total > 0 ? dead / total : Number.NaN,
    errors,
  };
}
