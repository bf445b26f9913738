/**
 * The Grafana dashboard and the Prometheus rules in deploy/ against the metric registry the
 * services use: every metric a query or rule reads is one ThoraxMetrics exports, one an app
 * registers itself (apps/<app>/src), a recording rule or Prometheus's own `up` (rules may also read
 * the few series of other exporters listed in EXTERNAL), the dashboard is well-formed, and every
 * alert has a test.
 * test/e2e/observability.e2e-spec.ts repeats the metric check against live scrapes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { promqlSelectors } from './dashboard-lint';
import { ThoraxMetrics } from './metrics';
import { metricNamesIn } from '@thorax/testing';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const read = (...p: string[]) => readFileSync(path.join(ROOT, ...p), 'utf8');

/** Series of other exporters that rules (never the dashboard) read, and why. */
const EXTERNAL: Record<string, string> = {
  kube_pod_container_resource_limits: 'kube-state-metrics: which pods have a GPU limit (ThoraxInferenceOnCpuDespiteGpu)',
};
/** Alerts that cannot fire under a static scrape, and why (their static tests expect quiet). */
const KUBERNETES_ONLY: Record<string, string> = {
  ThoraxInferenceOnCpuDespiteGpu: 'knows a GPU was expected only from kube-state-metrics (a pod GPU limit)',
};

/**
 * Sample names of the metrics the apps register themselves (`new Counter({ name: 'thorax_…' })`
 * in apps/<app>/src, tests excluded): a histogram's _bucket, _sum and _count.
 */
function appMetricSamples(): string[] {
  const names: string[] = [];
  for (const app of readdirSync(path.join(ROOT, 'apps'))) {
    const src = path.join(ROOT, 'apps', app, 'src');
    let files: string[];
    try {
      files = readdirSync(src, { recursive: true, encoding: 'utf8' });
    } catch {
      continue;
    }
    for (const file of files.filter((f) => f.endsWith('.ts') && !/\.(spec|integration-spec)\.ts$/.test(f))) {
      const text = readFileSync(path.join(src, file), 'utf8');
      for (const [, type, name] of text.matchAll(/new (Counter|Gauge|Histogram)(?:<[^>]*>)?\(\{\s*name: '(thorax_\w+)'/g)) {
        if (type === 'Histogram') names.push(`${name}_bucket`, `${name}_sum`, `${name}_count`);
        else names.push(name as string);
      }
    }
  }
  return names;
}

interface Target {
  expr?: string;
  refId?: string;
  format?: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { uid?: string };
  targets?: Target[];
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; current?: { value?: unknown } }[] };
}
interface RulesTestFile {
  tests: {
    input_series: { series: string }[];
    alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[];
  }[];
}

/** `expr:` values of a rules file, block scalars included. */
function ruleExpressions(yaml: string): string[] {
  const lines = yaml.split('\n');
  const exprs: string[] = [];
  lines.forEach((line, i) => {
    const match = /^(\s*)expr:\s*(.*)$/.exec(line);
    if (!match) return;
    const [, indent = '', value = ''] = match;
    if (!/^[|>][-+]?$/.test(value.trim())) {
      exprs.push(value.trim());
      return;
    }
    const body: string[] = [];
    for (let j = i + 1; j < lines.length; j += 1) {
      const next = lines[j] as string;
      if (next.trim() !== '' && next.search(/\S/) <= indent.length) break;
      body.push(next);
    }
    exprs.push(body.join('\n').trim());
  });
  return exprs;
}

const rulesYaml = read('deploy', 'prometheus', 'rules', 'thorax.rules.yml');
const recorded = [...rulesYaml.matchAll(/^\s*- record:\s*(\S+)/gm)].map((m) => m[1] as string);
const alerts = [...rulesYaml.matchAll(/^\s*- alert:\s*(\S+)/gm)].map((m) => m[1] as string);
const dashboard = JSON.parse(read('deploy', 'grafana', 'dashboards', 'thorax-overview.json')) as Dashboard;
const queryPanels = dashboard.panels.filter((p) => p.type !== 'row');

const appSamples = appMetricSamples();
let known: Set<string>;
beforeAll(async () => {
  known = new Set([...(await new ThoraxMetrics('any').sampleNames()), ...appSamples, ...recorded, 'up']);
});

describe('Prometheus rules', () => {
  it('read only metrics the services export or the rules record', () => {
    const exprs = ruleExpressions(rulesYaml);
    expect(exprs.length).toBe(recorded.length + alerts.length);
    const unknown = exprs.flatMap((e) => metricNamesIn(e).filter((n) => !known.has(n) && !(n in EXTERNAL)).map((n) => `${n} in ${e}`));
    expect(unknown).toEqual([]);
    // Each exception is still needed.
    const used = new Set(exprs.flatMap((e) => metricNamesIn(e)));
    expect(Object.keys(EXTERNAL).filter((n) => !used.has(n))).toEqual([]);
  });

  it('find the metrics the apps register (model files, inference workers, review images, FHIR outbox)', () => {
    expect(appSamples).toEqual(
      expect.arrayContaining([
        'thorax_model_directory_missing',
        'thorax_inference_batch_timeouts_total',
        'thorax_inference_worker_restarts_total',
        'thorax_review_images_total',
        'thorax_review_images_seconds_bucket',
        'thorax_fhir_bundles_total',
        'thorax_fhir_outbox_owner',
      ]),
    );
  });

  it('select on labels both a static and a Kubernetes scrape produce (no job or instance values, no service on up)', () => {
    const selectors = ruleExpressions(rulesYaml).flatMap((e) => promqlSelectors(e));
    expect(selectors.length).toBeGreaterThan(20);
    const staticOnly = selectors.filter(
      (s) => s.matchers.some((m) => m.name === 'job' || m.name === 'instance') || (s.metric === 'up' && s.matchers.length > 0),
    );
    expect(staticOnly).toEqual([]);
  });

  it('cover the alerts the runbook promises, each firing in promtool tests under both label sets', () => {
    expect(alerts).toEqual(
      expect.arrayContaining([
        'ThoraxConsumerLagGrowing',
        'ThoraxRecordErrorRatioHigh',
        'ThoraxDeadLetterRate',
        'ThoraxNoFindingsWhileInputArrives',
        'ThoraxEndToEndLatencyHigh',
        'ThoraxModelNotLoaded',
        'ThoraxServiceNotReady',
        'ThoraxPositiveRateDrift',
        'ThoraxModelFileMissing',
        'ThoraxInferenceBatchTimeouts',
        'ThoraxInferenceWorkersCrashing',
        'ThoraxInferenceOnCpuDespiteGpu',
        'ThoraxReviewImagesFailing',
        'ThoraxFhirOutboxNoOwner',
        'ThoraxFhirOutboxStalled',
        'ThoraxFhirBundleRefused',
      ]),
    );
    const testsDir = path.join(ROOT, 'deploy', 'prometheus', 'tests');
    const groups = readdirSync(testsDir)
      .filter((f) => f.endsWith('.test.yml'))
      .flatMap((f) => (parse(readFileSync(path.join(testsDir, f), 'utf8')) as RulesTestFile).tests);
    // A group's label set: Kubernetes when its series carry namespace and pod, static when none
    // does and Thorax's carry job="thorax".
    const labelSet = (g: RulesTestFile['tests'][number]) => {
      const series = g.input_series.map((i) => i.series);
      if (series.every((x) => /\bnamespace="/.test(x) && /\bpod="/.test(x))) return 'kubernetes';
      const thorax = series.filter((x) => /^thorax_|\bservice="/.test(x));
      if (!series.some((x) => /\b(namespace|pod)="/.test(x)) && thorax.length > 0 && thorax.every((x) => /\bjob="thorax"/.test(x))) return 'static';
      return 'mixed';
    };
    const tested = (set: string, firing: boolean) =>
      new Set(
        groups
          .filter((g) => labelSet(g) === set)
          .flatMap((g) => (g.alert_rule_test ?? []).filter((t) => t.exp_alerts.length > 0 === firing).map((t) => t.alertname)),
      );
    for (const set of ['static', 'kubernetes']) {
      const fired = tested(set, true);
      const expected = set === 'static' ? alerts.filter((a) => !(a in KUBERNETES_ONLY)) : alerts;
      expect({ set, untested: expected.filter((a) => !fired.has(a)) }).toEqual({ set, untested: [] });
    }
    // A Kubernetes-only alert stays quiet on a static scrape, in a test that says so.
    const staticQuiet = tested('static', false);
    const staticFired = tested('static', true);
    for (const alert of Object.keys(KUBERNETES_ONLY)) {
      expect({ alert, exists: alerts.includes(alert), quietOnStatic: staticQuiet.has(alert) && !staticFired.has(alert) }).toEqual({
        alert,
        exists: true,
        quietOnStatic: true,
      });
    }
    const docs = read('docs', 'observability.md');
    for (const alert of alerts) expect({ alert, documented: docs.includes(alert) }).toEqual({ alert, documented: true });
  });
});

describe('Grafana dashboard', () => {
  it('is a well-formed dashboard on the provisioned datasource', () => {
    expect(dashboard).toMatchObject({ uid: 'thorax-overview', title: 'Thorax overview' });
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    // No datasource uid in the file: Grafana picks the default Prometheus (the provisioned one
    // under Compose, the cluster's under Kubernetes) and every query goes through the variable.
    const provisioned = /uid:\s*(\S+)/.exec(read('deploy', 'grafana', 'provisioning', 'datasources', 'thorax.yml'))?.[1];
    expect(provisioned).toBeTruthy();
    expect(JSON.stringify(dashboard)).not.toContain(provisioned);
    const dsVar = dashboard.templating.list.find((v) => v.type === 'datasource');
    expect(dsVar?.current?.value).toBeUndefined();
    for (const panel of queryPanels) {
      expect(panel.gridPos.x + panel.gridPos.w).toBeLessThanOrEqual(24);
      expect(panel.datasource?.uid).toBe(`\${${dsVar?.name}}`);
      for (const target of panel.targets ?? []) expect(target.datasource?.uid).toBe(`\${${dsVar?.name}}`);
      expect(panel.targets?.length).toBeGreaterThan(0);
      const refIds = (panel.targets ?? []).map((t) => t.refId);
      expect(new Set(refIds).size).toBe(refIds.length);
      for (const target of panel.targets ?? []) expect(target.expr?.trim()).toBeTruthy();
    }
  });

  it('queries only metrics the services export or the rules record', () => {
    const unknown = queryPanels.flatMap((p) =>
      (p.targets ?? []).flatMap((t) => metricNamesIn(t.expr ?? '').filter((n) => !known.has(n)).map((n) => `${p.title}: ${n}`)),
    );
    expect(unknown).toEqual([]);
  });

  it('shows what an SRE needs: throughput, latency heatmap, batches, lag, errors, DLQ, drift, model, workers, review objects, FHIR outbox', () => {
    const used = new Set(queryPanels.flatMap((p) => (p.targets ?? []).flatMap((t) => metricNamesIn(t.expr ?? ''))));
    for (const name of [
      'thorax_messages_total',
      'thorax_end_to_end_latency_seconds_bucket',
      'thorax_stage_duration_seconds_bucket',
      'thorax_inference_batch_size_bucket',
      'thorax_inference_duration_seconds_bucket',
      'thorax_consumer_lag',
      'thorax_errors_total',
      'thorax_findings_total',
      'thorax:findings_positive_ratio:rate1h',
      'thorax_model_info',
      'thorax_queue_depth',
      'thorax_http_requests_total',
      'thorax_grpc_server_handled_total',
      'thorax_ready',
      'thorax_inference_worker_restarts_total',
      'thorax_model_directory_missing',
      'thorax_review_images_total',
      'thorax_fhir_bundles_total',
      'thorax_fhir_outbox_owner',
    ]) {
      expect({ name, used: used.has(name) }).toEqual({ name, used: true });
    }
    const heatmap = queryPanels.find((p) => p.type === 'heatmap');
    expect(heatmap?.targets?.[0]?.format).toBe('heatmap');
    const model = queryPanels.find((p) => (p.targets ?? []).some((t) => t.expr?.includes('thorax_model_info')));
    expect(model?.targets?.[0]?.expr).toMatch(/version.*provider|provider.*version/);
  });
});

describe('metricNamesIn', () => {
  it('finds selectors, not functions, keywords, labels, durations or Grafana variables', () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.99, sum by (le, service) (rate(thorax_x_bucket{service=~"$service", a="b{c}"}[$__rate_interval]))) ' +
          '/ on (service) group_left thorax:rec:rate5m offset 5m > bool 1e3 unless up == 0 and nodejs_y',
      ).sort(),
    ).toEqual(['nodejs_y', 'thorax:rec:rate5m', 'thorax_x_bucket', 'up']);
  });
});
