/**
 * The rules of Grafana's dashboard linter (github.com/grafana/dashboard-linter), for dashboards on
 * a Prometheus datasource, as a library the dashboard tests run: a templated datasource used by
 * every panel and target, multi-select `job` and `instance` variables (All = `.+`) reloaded on
 * time change, `job=~"$job"` and `instance=~"$instance"` in every selector, `$__rate_interval` in
 * every rate/irate, counters only through rate/irate/increase, a title, description, unit and
 * target on every panel, label queries of a known function, and a dashboard not editable in the UI.
 * Exclusions come from a `.lint` file beside the dashboard, in the linter's own format.
 *
 * PromQL is read by a small tokenizer that finds selectors, their matchers, ranges and enclosing
 * function: enough for these rules, not a validator. Whether every query parses is checked by
 * promtool (Prometheus's own parser) in promtool.integration-spec.ts, on `expandVariables` output.
 */

export interface DashboardTarget {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string } | string | null;
}
export interface DashboardPanel {
  id: number;
  type: string;
  title?: string;
  description?: string;
  datasource?: { type?: string; uid?: string } | string | null;
  targets?: DashboardTarget[];
  fieldConfig?: { defaults?: { unit?: string }; overrides?: { properties?: { id: string; value?: unknown }[] }[] };
  panels?: DashboardPanel[];
}
export interface DashboardVariable {
  name: string;
  type: string;
  label?: string;
  query?: string | { query?: string };
  datasource?: { type?: string; uid?: string } | string | null;
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string | null;
  refresh?: number;
}
export interface LintedDashboard {
  title: string;
  editable?: boolean;
  panels: DashboardPanel[];
  templating: { list: DashboardVariable[] };
}

export interface LintExclusions {
  exclusions?: Record<string, { reason?: string; entries?: { dashboard?: string; panel?: string; targetIdx?: string }[] } | null>;
}

export interface Violation {
  rule: string;
  panel?: string;
  targetIdx?: number;
  message: string;
}

export interface Matcher {
  name: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}
export interface Selector {
  metric?: string;
  matchers: Matcher[];
  /** The text inside `[...]` when the selector is a range (matrix) selector. */
  range?: string;
  /** The function whose argument the selector is directly (rate, sum, …), if any. */
  enclosingCall?: string;
}

const AGGREGATIONS = new Set([
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile',
  'limitk', 'limit_ratio',
]);
const FUNCTIONS = new Set([
  'abs', 'absent', 'absent_over_time', 'acos', 'acosh', 'asin', 'asinh', 'atan', 'atanh', 'avg_over_time', 'ceil',
  'changes', 'clamp', 'clamp_max', 'clamp_min', 'cos', 'cosh', 'count_over_time', 'day_of_month', 'day_of_week',
  'day_of_year', 'days_in_month', 'deg', 'delta', 'deriv', 'exp', 'floor', 'histogram_avg', 'histogram_count',
  'histogram_fraction', 'histogram_quantile', 'histogram_stddev', 'histogram_stdvar', 'histogram_sum',
  'double_exponential_smoothing', 'holt_winters', 'hour', 'idelta', 'increase', 'irate', 'label_join',
  'label_replace', 'last_over_time', 'ln', 'log10', 'log2', 'mad_over_time', 'max_over_time', 'min_over_time',
  'minute', 'month', 'pi', 'predict_linear', 'present_over_time', 'quantile_over_time', 'rad', 'rate', 'resets',
  'round', 'scalar', 'sgn', 'sin', 'sinh', 'sort', 'sort_by_label', 'sort_by_label_desc', 'sort_desc', 'sqrt',
  'stddev_over_time', 'stdvar_over_time', 'sum_over_time', 'tan', 'tanh', 'time', 'timestamp', 'vector', 'year',
]);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'atan2', 'inf', 'nan']);
/** Grafana's `$__rate_interval` and friends stand for durations; other variables for strings. */
const DURATION_VARIABLES = /^\$\{?__(rate_interval|interval|interval_ms|range|range_s|range_ms)\}?$/;

type Token = { kind: 'str' | 'ident' | 'num' | 'var' | 'punct' | 'op'; text: string };

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const rules: [Token['kind'], RegExp][] = [
    ['str', /^"(?:[^"\\]|\\.)*"|^'(?:[^'\\]|\\.)*'|^`[^`]*`/],
    ['var', /^\$\{[^}]+\}|^\$[A-Za-z_][\w.]*/],
    ['num', /^(?:0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)/],
    ['ident', /^[A-Za-z_][\w:]*/],
    ['op', /^(?:==|!=|=~|!~|<=|>=|[=<>+\-*/%^@:])/],
    ['punct', /^[(){}[\],]/],
  ];
  while (i < expr.length) {
    const rest = expr.slice(i);
    const space = /^\s+|^#[^\n]*/.exec(rest);
    if (space) {
      i += space[0].length;
      continue;
    }
    const hit = rules.map(([kind, re]) => [kind, re.exec(rest)] as const).find(([, m]) => m);
    if (!hit || !hit[1]) throw new Error(`unexpected character ${JSON.stringify(rest[0])} at ${i} in: ${expr}`);
    tokens.push({ kind: hit[0], text: hit[1][0] });
    i += hit[1][0].length;
  }
  return tokens;
}

function unquote(text: string): string {
  if (text.startsWith('`')) return text.slice(1, -1);
  return text.slice(1, -1).replace(/\\(.)/g, '$1');
}

/**
 * Every vector and range selector of a PromQL expression (Grafana variables allowed), with the
 * function it is the direct argument of. Throws on unbalanced brackets, unknown functions and
 * malformed matchers.
 */
export function promqlSelectors(expr: string): Selector[] {
  const tokens = tokenize(expr);
  const selectors: Selector[] = [];
  const frames: (string | undefined)[] = [];
  let pendingAggregation: string | undefined;
  const at = (i: number) => tokens[i];
  const expect = (i: number, text: string) => {
    if (at(i)?.text !== text) throw new Error(`expected "${text}" at token ${i} in: ${expr}`);
  };
  /** Index after the `)` closing the `(` at i. */
  const skipParens = (i: number): number => {
    expect(i, '(');
    for (let j = i + 1; j < tokens.length; j += 1) {
      if (at(j)?.text === ')') return j + 1;
      if (at(j)?.text === '(') throw new Error(`nested parenthesis in a label list in: ${expr}`);
    }
    throw new Error(`unclosed label list in: ${expr}`);
  };
  const readMatchers = (i: number): [Matcher[], number] => {
    expect(i, '{');
    const matchers: Matcher[] = [];
    let j = i + 1;
    while (at(j)?.text !== '}') {
      const name = at(j);
      const op = at(j + 1);
      const value = at(j + 2);
      if (!name || (name.kind !== 'ident' && name.kind !== 'str') || !op || !['=', '!=', '=~', '!~'].includes(op.text) || value?.kind !== 'str') {
        throw new Error(`malformed label matcher at token ${j} in: ${expr}`);
      }
      matchers.push({ name: name.kind === 'str' ? unquote(name.text) : name.text, op: op.text as Matcher['op'], value: unquote(value.text) });
      j += 3;
      if (at(j)?.text === ',') j += 1;
      else if (at(j)?.text !== '}') throw new Error(`expected "," or "}" at token ${j} in: ${expr}`);
    }
    return [matchers, j + 1];
  };
  const readRange = (i: number): [string, number] => {
    expect(i, '[');
    let j = i + 1;
    const parts: string[] = [];
    while (at(j) && at(j)?.text !== ']') {
      const token = at(j) as Token;
      if (token.kind === 'var' && !DURATION_VARIABLES.test(token.text)) throw new Error(`non-duration variable ${token.text} in a range in: ${expr}`);
      if (!['num', 'var'].includes(token.kind) && token.text !== ':') throw new Error(`malformed range at token ${j} in: ${expr}`);
      parts.push(token.text);
      j += 1;
    }
    expect(j, ']');
    if (parts.length === 0) throw new Error(`empty range in: ${expr}`);
    return [parts.join(''), j + 1];
  };

  let i = 0;
  while (i < tokens.length) {
    const token = at(i) as Token;
    const next = at(i + 1);
    if (token.kind === 'ident' && KEYWORDS.has(token.text.toLowerCase())) {
      i += 1;
      continue;
    }
    if (token.kind === 'ident' && GROUPING.has(token.text)) {
      i = next?.text === '(' ? skipParens(i + 1) : i + 1;
      continue;
    }
    if (token.kind === 'ident' && AGGREGATIONS.has(token.text) && (next?.text === '(' || (next && GROUPING.has(next.text)))) {
      if (next.text === '(') {
        frames.push(token.text);
        i += 2;
      } else {
        pendingAggregation = token.text;
        i += 1;
      }
      continue;
    }
    if (token.kind === 'ident' && next?.text === '(') {
      if (!FUNCTIONS.has(token.text)) throw new Error(`unknown function ${token.text} in: ${expr}`);
      frames.push(token.text);
      i += 2;
      continue;
    }
    if (token.text === '(') {
      frames.push(pendingAggregation);
      pendingAggregation = undefined;
      i += 1;
      continue;
    }
    if (token.text === ')') {
      if (frames.length === 0) throw new Error(`unbalanced ")" in: ${expr}`);
      frames.pop();
      i += 1;
      // A subquery's range after a closing parenthesis.
      if (at(i)?.text === '[') i = readRange(i)[1];
      continue;
    }
    if (token.kind === 'ident' || token.text === '{') {
      const selector: Selector = { matchers: [], enclosingCall: frames[frames.length - 1] };
      let j = i;
      if (token.kind === 'ident') {
        selector.metric = token.text;
        j += 1;
      }
      if (at(j)?.text === '{') [selector.matchers, j] = readMatchers(j);
      if (at(j)?.text === '[') [selector.range, j] = readRange(j);
      if (!selector.metric && selector.matchers.length === 0) throw new Error(`empty selector in: ${expr}`);
      selectors.push(selector);
      i = j;
      continue;
    }
    if (token.text === '[' || token.text === ']' || token.text === '}') throw new Error(`unexpected "${token.text}" in: ${expr}`);
    i += 1;
  }
  if (frames.length > 0) throw new Error(`unclosed "(" in: ${expr}`);
  return selectors;
}

/**
 * The expression with Grafana's variables replaced the way the dashboard linter does before it
 * parses: duration variables by a duration, others (outside quotes) by a placeholder name;
 * variables inside a quoted string stay as they are.
 */
export function expandVariables(expr: string): string {
  return expr.replace(/"(?:[^"\\]|\\.)*"|\$\{[^}]+\}|\$[A-Za-z_]\w*|\[\[[^\]]+\]\]/g, (match) => {
    if (match.startsWith('"')) return match;
    if (DURATION_VARIABLES.test(match)) return '211d12h44m22s';
    return `grafana_var_${match.replace(/[^\w]/g, '')}`;
  });
}

const PANELS_WITH_TARGETS = new Set(['stat', 'singlestat', 'graph', 'table', 'timeseries', 'gauge', 'heatmap', 'bargauge', 'state-timeline', 'piechart']);
const LABEL_QUERY_FUNCTIONS = new Set(['label_names', 'label_values', 'metrics', 'query_result']);
/** Units of Grafana's value formats that a panel here may use (misc, data, time, throughput, boolean). */
export const GRAFANA_UNITS = new Set([
  'none', 'string', 'short', 'percent', 'percentunit', 'sci', 'locale',
  'bytes', 'decbytes', 'bits', 'decbits', 'kbytes', 'deckbytes', 'mbytes', 'decmbytes', 'gbytes', 'decgbytes',
  'binBps', 'Bps', 'binbps', 'bps', 'pps',
  'hertz', 'ns', 'µs', 'ms', 's', 'm', 'h', 'd', 'dtdurationms', 'dtdurations', 'dthms', 'dtdhms', 'timeticks', 'clockms', 'clocks',
  'cps', 'ops', 'reqps', 'rps', 'wps', 'iops', 'cpm', 'opm', 'rpm', 'wpm',
  'bool', 'bool_yes_no', 'bool_on_off',
]);

function dsUid(ds: DashboardPanel['datasource']): string | undefined {
  if (ds === null || ds === undefined) return undefined;
  return typeof ds === 'string' ? ds : ds.uid;
}

function queryText(v: DashboardVariable): string {
  return typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
}

/** All violations of the linter's rules, less those the exclusions file lists. */
export function lintDashboard(dashboard: LintedDashboard, config: LintExclusions = {}): Violation[] {
  const found: Violation[] = [];
  const add = (rule: string, message: string, panel?: DashboardPanel, targetIdx?: number) =>
    found.push({ rule, panel: panel?.title, targetIdx, message });
  const variables = dashboard.templating?.list ?? [];
  const datasources = variables.filter((v) => v.type === 'datasource');
  const dsRefs = new Set(datasources.flatMap((v) => [`$${v.name}`, `\${${v.name}}`]));

  // template-datasource-rule
  if (datasources.length === 0) add('template-datasource-rule', 'no templated datasource');
  for (const v of datasources) {
    const query = queryText(v);
    const names = [`${query.toLowerCase()}_datasource`, ...(datasources.length === 1 ? ['datasource'] : [])];
    const labels = [`${query.charAt(0).toUpperCase()}${query.slice(1).toLowerCase()} data source`, ...(datasources.length === 1 ? ['Data source'] : [])];
    if (!names.includes(v.name)) add('template-datasource-rule', `datasource variable is named ${v.name}, not ${names.join(' or ')}`);
    if (!labels.includes(v.label ?? '')) add('template-datasource-rule', `datasource variable is labelled ${v.label}, not ${labels.join(' or ')}`);
  }
  const prometheus = datasources.some((v) => queryText(v) === 'prometheus');

  // template-job-rule, template-instance-rule
  if (prometheus) {
    for (const name of ['job', 'instance']) {
      const rule = `template-${name}-rule`;
      const v = variables.find((t) => t.name === name);
      if (!v) {
        add(rule, `no ${name} variable`);
        continue;
      }
      if (!['$datasource', '${datasource}', '$prometheus_datasource', '${prometheus_datasource}'].includes(dsUid(v.datasource) ?? '')) {
        add(rule, `${name} variable uses datasource ${JSON.stringify(v.datasource)}, not $datasource`);
      }
      if (v.type !== 'query') add(rule, `${name} variable is a ${v.type}, not a query`);
      if (v.label !== `${name.charAt(0).toUpperCase()}${name.slice(1)}`) add(rule, `${name} variable is labelled ${v.label}`);
      if (!v.multi) add(rule, `${name} variable is not multi-select`);
      if (!v.includeAll) add(rule, `${name} variable has no All option`);
      if (v.allValue !== '.+') add(rule, `${name} variable's All is ${v.allValue}, not .+`);
    }
  }

  for (const v of variables.filter((t) => t.type === 'query')) {
    // template-label-promql-rule
    const query = queryText(v);
    const call = /^\s*([a-z_]+)\((.*)\)\s*$/s.exec(query);
    if (!call || !LABEL_QUERY_FUNCTIONS.has(call[1] as string)) {
      add('template-label-promql-rule', `variable ${v.name} has an invalid query: ${query}`);
    } else {
      const args = call[2] as string;
      const [selector, label] = call[1] === 'label_values' && args.includes(',') ? [args.slice(0, args.lastIndexOf(',')), args.slice(args.lastIndexOf(',') + 1).trim()] : [args, undefined];
      try {
        if (selector.trim()) promqlSelectors(selector);
        if (label !== undefined && !/^[A-Za-z_]\w*$/.test(label)) throw new Error(`invalid label name ${label}`);
      } catch (error) {
        add('template-label-promql-rule', `variable ${v.name}: ${(error as Error).message}`);
      }
    }
    // template-on-time-change-reload-rule
    if (v.refresh !== 2) add('template-on-time-change-reload-rule', `variable ${v.name} refreshes on ${v.refresh}, not on time range change (2)`);
  }

  // uneditable-dashboard
  if (dashboard.editable !== false) add('uneditable-dashboard', 'dashboard is editable');

  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
  for (const panel of panels) {
    if (!PANELS_WITH_TARGETS.has(panel.type)) continue;
    // panel-datasource-rule
    if (!dsRefs.has(dsUid(panel.datasource) ?? '')) add('panel-datasource-rule', `uses datasource ${JSON.stringify(panel.datasource)}`, panel);
    // panel-title-description-rule
    if (!panel.title?.trim() || !panel.description?.trim()) add('panel-title-description-rule', 'missing title or description', panel);
    // panel-units-rule
    const override = panel.fieldConfig?.overrides?.flatMap((o) => o.properties ?? []).find((p) => p.id === 'unit')?.value;
    const unit = (typeof override === 'string' ? override : undefined) ?? panel.fieldConfig?.defaults?.unit;
    if (!unit || !GRAFANA_UNITS.has(unit)) add('panel-units-rule', `no or invalid unit: ${unit}`, panel);
    // panel-no-targets-rule
    if (!panel.targets || panel.targets.length === 0) add('panel-no-targets-rule', 'no targets', panel);

    (panel.targets ?? []).forEach((target, idx) => {
      // target datasource: the panel's templated one (the target-level side of panel-datasource-rule)
      if (!dsRefs.has(dsUid(target.datasource) ?? '')) add('panel-datasource-rule', `target uses datasource ${JSON.stringify(target.datasource)}`, panel, idx);
      if (!prometheus) return;
      let selectors: Selector[];
      try {
        if (!target.expr?.trim()) throw new Error('empty query');
        selectors = promqlSelectors(target.expr);
      } catch (error) {
        add('target-promql-rule', (error as Error).message, panel, idx);
        return;
      }
      for (const s of selectors) {
        const shown = `${s.metric ?? ''}{${s.matchers.map((m) => `${m.name}${m.op}"${m.value}"`).join(',')}}`;
        // target-job-rule, target-instance-rule
        for (const name of ['job', 'instance']) {
          if (!s.matchers.some((m) => m.name === name && m.op === '=~' && m.value === `$${name}`)) {
            add(`target-${name}-rule`, `${shown} has no ${name}=~"$${name}"`, panel, idx);
          }
        }
        // target-rate-interval-rule
        if (s.range !== undefined && (s.enclosingCall === 'rate' || s.enclosingCall === 'irate') && s.range !== '$__rate_interval') {
          add('target-rate-interval-rule', `${s.enclosingCall} over [${s.range}] in ${shown}, not [$__rate_interval]`, panel, idx);
        }
        // target-counter-agg-rule
        if (s.metric?.endsWith('_total') && (s.range === undefined || !['rate', 'irate', 'increase'].includes(s.enclosingCall ?? ''))) {
          add('target-counter-agg-rule', `counter ${shown} is not read through rate, irate or increase`, panel, idx);
        }
      }
    });
  }

  return found.filter((v) => {
    if (!config.exclusions || !(v.rule in config.exclusions)) return true;
    const entries = config.exclusions[v.rule]?.entries ?? [];
    if (entries.length === 0) return false;
    return !entries.some(
      (e) =>
        e.dashboard === dashboard.title &&
        (v.panel === undefined || e.panel === v.panel) &&
        (v.targetIdx === undefined || e.targetIdx === undefined || Number(e.targetIdx) === v.targetIdx),
    );
  });
}
