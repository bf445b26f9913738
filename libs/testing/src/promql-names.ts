/**
 * The metric names a PromQL expression reads (selectors, not functions, keywords, label names or
 * durations), so dashboards and rules can be checked against what the services export. Grafana
 * variables are replaced first. Not a full parser: enough for the queries this repo writes, and
 * it errs towards reporting a name rather than missing one.
 */
const KEYWORDS = new Set([
  'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset',
  'inf', 'nan', 'atan2', 'start', 'end',
]);

export function metricNamesIn(expr: string): string[] {
  let text = expr
    .replace(/\$__(rate_interval|interval|range)\b/g, '5m')
    .replace(/\$\{[^}]*\}|\[\[[^\]]*\]\]|\$[A-Za-z_]\w*/g, 'var');
  text = text.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  text = text.replace(/\{[^}]*\}/g, ' ');
  text = text.replace(/\[[^\]]*\]/g, ' ');
  text = text.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of text.matchAll(/(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()/g)) {
    const name = match[1] as string;
    if (KEYWORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names];
}
