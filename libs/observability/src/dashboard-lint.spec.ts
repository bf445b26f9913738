/**
 * The Grafana dashboard against the rules of Grafana's dashboard linter (dashboard-lint.ts), with
 * the exceptions of deploy/grafana/dashboards/.lint, and the rules themselves on dashboards that
 * break them. Whether the queries parse as PromQL is promtool's job (promtool.integration-spec.ts).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { expandVariables, lintDashboard, type LintedDashboard, type LintExclusions, promqlSelectors } from './dashboard-lint';

const DASHBOARDS = path.resolve(__dirname, '..', '..', '..', 'deploy', 'grafana', 'dashboards');
const dashboard = JSON.parse(readFileSync(path.join(DASHBOARDS, 'thorax-overview.json'), 'utf8')) as LintedDashboard;
const exclusions = parse(readFileSync(path.join(DASHBOARDS, '.lint'), 'utf8')) as LintExclusions;

/** A dashboard that passes every rule; each negative test breaks one thing. */
function goodDashboard(): LintedDashboard {
  const ds = { type: 'prometheus', uid: '${datasource}' };
  const variable = (name: string, label: string) => ({
    name,
    label,
    type: 'query',
    datasource: ds,
    query: { query: `label_values(thorax_build_info, ${name})` },
    multi: true,
    includeAll: true,
    allValue: '.+',
    refresh: 2,
  });
  return {
    title: 'Example',
    editable: false,
    templating: {
      list: [
        { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus' },
        variable('job', 'Job'),
        variable('instance', 'Instance'),
      ],
    },
    panels: [
      { id: 1, type: 'row', title: 'Row' },
      {
        id: 2,
        type: 'timeseries',
        title: 'Throughput',
        description: 'Records per second.',
        datasource: ds,
        fieldConfig: { defaults: { unit: 'ops' } },
        targets: [
          {
            refId: 'A',
            datasource: ds,
            expr: 'sum by (service) (rate(thorax_messages_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))',
          },
        ],
      },
    ],
  };
}

const rulesBroken = (d: LintedDashboard) => [...new Set(lintDashboard(d).map((v) => v.rule))].sort();

describe('Thorax overview dashboard', () => {
  it('passes every rule of the dashboard linter, with only the exceptions .lint states', () => {
    expect(lintDashboard(dashboard, exclusions)).toEqual([]);
  });

  it('needs each exception it states, and no other', () => {
    const excepted = lintDashboard(dashboard).map((v) => `${v.rule}: ${v.panel}`);
    const stated = Object.entries(exclusions.exclusions ?? {}).flatMap(([rule, e]) => (e?.entries ?? []).map((x) => `${rule}: ${x.panel}`));
    expect([...new Set(excepted)].sort()).toEqual(stated.sort());
  });

  it('has datasource, job, service and instance variables, each chained to the one before', () => {
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'job', 'service', 'instance']);
    const query = (name: string) => {
      const q = dashboard.templating.list.find((v) => v.name === name)?.query;
      return typeof q === 'string' ? q : q?.query;
    };
    expect(query('service')).toContain('job=~"$job"');
    expect(query('instance')).toMatch(/job=~"\$job".*service=~"\$service"/);
  });
});

describe('lintDashboard', () => {
  it('finds nothing on a dashboard that follows the rules', () => {
    expect(lintDashboard(goodDashboard())).toEqual([]);
  });

  it('flags a hard-coded datasource on a panel or a target', () => {
    const d = goodDashboard();
    const panel = d.panels[1]!;
    panel.datasource = { type: 'prometheus', uid: 'thorax-prometheus' };
    (panel.targets ?? [])[0]!.datasource = { uid: 'P1809F7CD0C75ACF3' };
    expect(lintDashboard(d)).toEqual([
      expect.objectContaining({ rule: 'panel-datasource-rule', panel: 'Throughput', targetIdx: undefined }),
      expect.objectContaining({ rule: 'panel-datasource-rule', panel: 'Throughput', targetIdx: 0 }),
    ]);
  });

  it('flags a missing or misnamed datasource variable', () => {
    const d = goodDashboard();
    d.templating.list[0] = { name: 'ds', label: 'Prometheus', type: 'datasource', query: 'prometheus' };
    // Panels name ${datasource}, which no longer exists.
    expect(rulesBroken(d)).toEqual(['panel-datasource-rule', 'template-datasource-rule']);
    d.templating.list.shift();
    expect(rulesBroken(d)).toContain('template-datasource-rule');
  });

  it('flags job and instance variables that are missing, single-select or have another All value', () => {
    const d = goodDashboard();
    d.templating.list = d.templating.list.filter((v) => v.name !== 'job');
    const instance = d.templating.list.find((v) => v.name === 'instance')!;
    instance.multi = false;
    instance.allValue = '.*';
    const found = lintDashboard(d);
    expect(found.filter((v) => v.rule === 'template-job-rule').map((v) => v.message)).toEqual(['no job variable']);
    expect(found.filter((v) => v.rule === 'template-instance-rule').map((v) => v.message)).toEqual([
      'instance variable is not multi-select',
      "instance variable's All is .*, not .+",
    ]);
  });

  it('flags label queries that are not a known function or do not parse, and variables not reloaded on time change', () => {
    const d = goodDashboard();
    d.templating.list[1]!.query = 'label_values(up{job=, job)';
    d.templating.list[2]!.query = 'values(up, instance)';
    d.templating.list[2]!.refresh = 1;
    expect(lintDashboard(d).map((v) => v.rule)).toEqual([
      'template-label-promql-rule',
      'template-label-promql-rule',
      'template-on-time-change-reload-rule',
    ]);
  });

  it('flags selectors without the job or instance matcher, in every part of an expression', () => {
    const d = goodDashboard();
    d.panels[1]!.targets![0]!.expr =
      'sum(rate(thorax_messages_total{job=~"$job", instance=~"$instance"}[$__rate_interval])) / sum(rate(thorax_messages_total{job="thorax"}[$__rate_interval]))';
    expect(lintDashboard(d).map((v) => v.rule)).toEqual(['target-job-rule', 'target-instance-rule']);
  });

  it('flags rate over a fixed range and counters read without rate or increase', () => {
    const d = goodDashboard();
    const m = '{job=~"$job", instance=~"$instance"}';
    d.panels[1]!.targets = [
      { refId: 'A', datasource: { uid: '$datasource' }, expr: `rate(thorax_messages_total${m}[5m])` },
      { refId: 'B', datasource: { uid: '$datasource' }, expr: `increase(thorax_messages_total${m}[1h])` },
      { refId: 'C', datasource: { uid: '$datasource' }, expr: `sum(thorax_messages_total${m})` },
    ];
    expect(lintDashboard(d).map((v) => [v.rule, v.targetIdx])).toEqual([
      ['target-rate-interval-rule', 0],
      ['target-counter-agg-rule', 2],
    ]);
  });

  it('flags panels without a unit, description or targets, queries that do not parse, and an editable dashboard', () => {
    const d = goodDashboard();
    d.editable = true;
    d.panels.push({ id: 3, type: 'timeseries', title: 'Bare', datasource: { uid: '${datasource}' } });
    d.panels.push({
      id: 4,
      type: 'stat',
      title: 'Broken',
      description: 'Unbalanced.',
      datasource: { uid: '${datasource}' },
      fieldConfig: { defaults: { unit: 'furlongs' } },
      targets: [{ refId: 'A', datasource: { uid: '${datasource}' }, expr: 'sum(rate(up{job=~"$job", instance=~"$instance"}[$__rate_interval])' }],
    });
    expect(lintDashboard(d).map((v) => `${v.rule} ${v.panel ?? ''}`.trim())).toEqual([
      'uneditable-dashboard',
      'panel-title-description-rule Bare',
      'panel-units-rule Bare',
      'panel-no-targets-rule Bare',
      'panel-units-rule Broken',
      'target-promql-rule Broken',
    ]);
  });

  it('honours exclusions by rule, dashboard and panel', () => {
    const d = goodDashboard();
    d.panels[1]!.targets![0]!.expr = 'thorax:findings_positive_ratio:rate1h{job=~"$job"}';
    const entry = { dashboard: 'Example', panel: 'Throughput' };
    expect(lintDashboard(d, { exclusions: { 'target-instance-rule': { entries: [entry] } } })).toEqual([]);
    expect(lintDashboard(d, { exclusions: { 'target-instance-rule': { entries: [{ ...entry, panel: 'Other' }] } } })).toHaveLength(1);
    expect(lintDashboard(d, { exclusions: { 'target-job-rule': { entries: [entry] } } })).toHaveLength(1);
  });
});

describe('promqlSelectors', () => {
  it('finds every selector with its matchers, range and the function it is the argument of', () => {
    expect(
      promqlSelectors(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job", le!="+Inf"}[$__rate_interval]))) ' +
          '/ on (job) group_left (service) max by (job, service) (last_over_time(b{x="}{"}[1h])) > bool 0 unless (c)',
      ),
    ).toEqual([
      { metric: 'a_bucket', matchers: [{ name: 'job', op: '=~', value: '$job' }, { name: 'le', op: '!=', value: '+Inf' }], range: '$__rate_interval', enclosingCall: 'rate' },
      { metric: 'b', matchers: [{ name: 'x', op: '=', value: '}{' }], range: '1h', enclosingCall: 'last_over_time' },
      { metric: 'c', matchers: [], enclosingCall: undefined },
    ]);
  });

  it('takes an aggregation as the enclosing call and reads bare matchers and subqueries', () => {
    expect(promqlSelectors('sum({__name__="x"}) + max_over_time(rate(y[5m])[1h:1m])')).toEqual([
      { matchers: [{ name: '__name__', op: '=', value: 'x' }], enclosingCall: 'sum' },
      { metric: 'y', matchers: [], range: '5m', enclosingCall: 'rate' },
    ]);
  });

  it('rejects unbalanced brackets, unknown functions and malformed matchers', () => {
    expect(() => promqlSelectors('sum(rate(x[5m])')).toThrow(/unclosed/);
    expect(() => promqlSelectors('rat(x[5m])')).toThrow(/unknown function rat/);
    expect(() => promqlSelectors('x{job=}')).toThrow(/malformed label matcher/);
    expect(() => promqlSelectors('x[$job]')).toThrow(/non-duration variable/);
  });

  it('expands Grafana variables as the linter does before parsing', () => {
    expect(expandVariables('rate(x{job=~"$job"}[$__rate_interval]) * $scale')).toBe('rate(x{job=~"$job"}[211d12h44m22s]) * grafana_var_scale');
  });
});
