/**
 * Guards bounded label cardinality: no label value may look like an identifier (image id,
 * SOP/study UID, patient id, accession, UUID, trace id, hash, cursor, raw URL), and no label may
 * be named after one. Works on the Prometheus text format, so it applies to a registry and to a
 * live `/metrics` scrape alike.
 */

/** Label names that would carry per-image or per-patient values. */
export const FORBIDDEN_LABEL_NAMES = [
  'id',
  'image_id',
  'imageid',
  'key',
  'patient',
  'patient_id',
  'patient_name',
  'study',
  'study_uid',
  'sop_instance_uid',
  'accession',
  'trace_id',
  'traceid',
  'span_id',
  'offset',
  'url',
  'path',
];

export interface LabelProblem {
  metric: string;
  label: string;
  value: string;
  reason: string;
}

const ID_PATTERNS: [RegExp, string][] = [
  [/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i, 'UUID'],
  [/^\d+(\.\d+){4,}$/, 'DICOM UID'],
  [/[0-9a-f]{16,}/i, 'long hex run (trace id, hash)'],
  [/\d{6,}/, 'long digit run (patient id, accession, timestamp)'],
  [/[A-Za-z0-9+/_=-]{33,}/, 'long unbroken token (cursor, encoded id)'],
  [/^[a-z][a-z0-9+.-]*:\/\//i, 'URL'],
  [/[?&][^=]+=/, 'query string'],
];

/** Problems with label names and values in Prometheus text-format metrics; empty when bounded. */
export function findIdLikeLabelValues(text: string, forbiddenValues: string[] = []): LabelProblem[] {
  const problems: LabelProblem[] = [];
  for (const sample of parseSamples(text)) {
    for (const [label, value] of Object.entries(sample.labels)) {
      if (FORBIDDEN_LABEL_NAMES.includes(label.toLowerCase())) {
        problems.push({ metric: sample.name, label, value, reason: `label name ${label} names an identifier` });
        continue;
      }
      if (label === 'le' || label === 'quantile') continue;
      const pattern = ID_PATTERNS.find(([re]) => re.test(value));
      if (pattern) problems.push({ metric: sample.name, label, value, reason: pattern[1] });
      const forbidden = forbiddenValues.find((f) => f.length > 0 && value.includes(f));
      if (forbidden) problems.push({ metric: sample.name, label, value, reason: `contains ${forbidden}` });
    }
  }
  return problems;
}

/** Distinct label sets per metric family (histogram buckets folded), to cap series growth. */
export function seriesPerMetric(text: string): Map<string, number> {
  const sets = new Map<string, Set<string>>();
  for (const sample of parseSamples(text)) {
    const family = sample.name.replace(/_(bucket|sum|count)$/, '');
    const { le: _le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const set = sets.get(family) ?? new Set<string>();
    set.add(key);
    sets.set(family, set);
  }
  return new Map([...sets].map(([name, set]) => [name, set.size]));
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: string;
}

/** The samples of a Prometheus text-format exposition (comments skipped, label escapes undone). */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name) throw new Error(`not a sample line: ${line}`);
    let rest = line.slice(name.length);
    const labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      const label = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/y;
      let pos = 1;
      for (;;) {
        if (rest[pos] === '}') break;
        label.lastIndex = pos;
        const match = label.exec(rest);
        if (!match) throw new Error(`bad labels: ${line}`);
        labels[match[1] as string] = (match[2] as string).replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
        pos = label.lastIndex;
      }
      rest = rest.slice(pos + 1);
    }
    samples.push({ name, labels, value: rest.trim().split(/\s+/)[0] ?? '' });
  }
  return samples;
}
