/**
 * promtool, the real Prometheus tool, on what Thorax exposes and ships: `check metrics` on a
 * service registry with every family populated, `check config` on the scrape configs, `test
 * rules` on the rules' unit tests (static and Kubernetes label sets), and PromQL parsing of every
 * dashboard query. Rules and queries go through both majors: Debian's promtool 2.x
 * (`bash scripts/prometheus.sh ensure`) and a 3.x built from its Go module
 * (`bash scripts/prometheus.sh ensure3`).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { stringify } from 'yaml';
import { expandVariables, type LintedDashboard } from './dashboard-lint';
import { HealthRegistry, healthy } from './health';
import { ThoraxMetrics } from './metrics';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const DEPLOY = path.join(ROOT, 'deploy', 'prometheus');
const RULE_TESTS = ['tests/thorax.static.test.yml', 'tests/thorax.kubernetes.test.yml', 'tests/thorax.drift.test.yml'];

function run(bin: string, args: string[], input?: string, cwd = ROOT): { status: number | null; output: string } {
  const result = spawnSync(bin, args, { input, cwd, encoding: 'utf8' });
  if (result.error) {
    throw new Error(`${bin} not found (${result.error.message}): run \`bash scripts/prometheus.sh ensure\` (and ensure3) or set PROMTOOL_BIN / PROMTOOL3_BIN`);
  }
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const PROMTOOL2 = process.env['PROMTOOL_BIN'] ?? 'promtool';
const promtool = (args: string[], input?: string, cwd = ROOT) => run(PROMTOOL2, args, input, cwd);

/** The promtool that `prometheus.sh ensure3` built (or PROMTOOL3_BIN). */
function promtool3(): string {
  const which = spawnSync('bash', [path.join(ROOT, 'scripts', 'prometheus.sh'), 'which3'], { encoding: 'utf8' });
  if (which.status !== 0) throw new Error(`promtool 3 missing: ${which.stderr.trim()}`);
  return which.stdout.trim();
}

const versions: [string, () => string][] = [
  ['2.x (Debian)', () => PROMTOOL2],
  ['3.x (Go module)', promtool3],
];

describe('promtool', () => {
  it('passes check metrics on a service registry with every family populated', async () => {
    const m = new ThoraxMetrics('results');
    const health = new HealthRegistry();
    health.addReadiness('results-store', () => healthy);
    m.bindHealth(health);
    m.messages.inc({ topic: 'thorax.findings.v1', outcome: 'ok' });
    m.stageDuration.observe({ stage: 'persist' }, 0.01);
    m.inferenceBatchSize.observe({ model: 'thorax-tiny-cnn', version: '2026.11.30-1' }, 4);
    m.inferenceDuration.observe({ model: 'thorax-tiny-cnn', version: '2026.11.30-1', provider: 'cpu' }, 0.02);
    m.endToEndLatency.observe(0.5);
    m.consumerLag.set({ topic: 'thorax.findings.v1', partition: '0', group: 'thorax-results' }, 0);
    m.modelInfo.set({ model: 'thorax-tiny-cnn', version: '2026.11.30-1', provider: 'cpu' }, 1);
    m.findings.inc({ label: 'Edema', positive: 'false' });
    m.errors.inc({ stage: 'results', code: 'INVALID_MESSAGE' });
    m.consumerBatchSize.observe({ topic: 'thorax.findings.v1' }, 3);
    m.queueDepth.set({ stage: 'inference', model: 'thorax-tiny-cnn', version: '2026.11.30-1' }, 2);
    m.httpRequests.inc({ method: 'GET', route: '/v1/findings/:id', status_code: '200' });
    m.httpDuration.observe({ method: 'GET', route: '/v1/findings/:id' }, 0.003);
    m.grpcHandled.inc({ grpc_service: 'thorax.v1.ResultsService', grpc_method: 'GetFindings', grpc_type: 'unary', grpc_code: 'OK' });
    m.grpcDuration.observe({ grpc_service: 'thorax.v1.ResultsService', grpc_method: 'GetFindings', grpc_type: 'unary' }, 0.002);
    m.grpcInFlight.set({ grpc_service: 'thorax.v1.ResultsService', grpc_method: 'WatchFindings', grpc_type: 'server_stream' }, 1);
    m.buildInfo.set({ version: '0.1.0' }, 1);
    const result = promtool(['check', 'metrics'], await m.registry.metrics());
    expect(result).toEqual({ status: 0, output: '' });
  });

  it('fails check metrics on prom-client defaults as shipped (the gauges ThoraxMetrics renames)', async () => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const result = promtool(['check', 'metrics'], await registry.metrics());
    expect(result.status).not.toBe(0);
    expect(result.output).toContain('nodejs_active_handles_total');
  });

  describe.each(versions)('promtool %s', (_name, bin) => {
    it('is the major it claims', () => {
      const major = _name.charAt(0);
      expect(run(bin(), ['--version']).output).toMatch(new RegExp(`^promtool, version ${major}\\.`));
    });

    it('accepts the scrape configs and rules, and passes the rules unit tests of both label sets', () => {
      const config = run(bin(), ['check', 'config', 'prometheus.yml', 'prometheus.compose.yml'], undefined, DEPLOY);
      expect(config.output).toContain('SUCCESS');
      expect(config.status).toBe(0);
      const tests = run(bin(), ['test', 'rules', ...RULE_TESTS], undefined, DEPLOY);
      expect(tests.output).not.toContain('FAILED');
      expect(tests.status).toBe(0);
      expect(tests.output.match(/SUCCESS/g)).toHaveLength(RULE_TESTS.length);
    }, 120_000);

    it('parses every dashboard query and label query as PromQL (Grafana variables expanded)', () => {
      const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'deploy', 'grafana', 'dashboards', 'thorax-overview.json'), 'utf8')) as LintedDashboard;
      const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));
      for (const v of dashboard.templating.list.filter((t) => t.type === 'query')) {
        const query = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
        const args = /^label_values\((.*),\s*\w+\)$/.exec(query)?.[1];
        if (args) exprs.push(args);
      }
      expect(exprs.length).toBeGreaterThanOrEqual(40);
      const rules = { groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `dashboard:query:${i}`, expr: expandVariables(e) })) }] };
      const dir = mkdtempSync(path.join(tmpdir(), 'thorax-dashboard-'));
      try {
        writeFileSync(path.join(dir, 'queries.yml'), stringify(rules));
        const parsed = run(bin(), ['check', 'rules', path.join(dir, 'queries.yml')]);
        expect(parsed.output).toContain(`SUCCESS: ${exprs.length} rules found`);
        expect(parsed.status).toBe(0);
        // And promtool does reject a broken one, so the check can fail.
        writeFileSync(path.join(dir, 'broken.yml'), stringify({ groups: [{ name: 'b', rules: [{ record: 'b:q', expr: expandVariables('sum(rate(x[$__rate_interval])') }] }] }));
        expect(run(bin(), ['check', 'rules', path.join(dir, 'broken.yml')]).status).not.toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
