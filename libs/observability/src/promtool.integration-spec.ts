/**
 * promtool, the real Prometheus tool, on what Thorax exposes and ships: `check metrics` on a
 * service registry with every family populated, `check config` on the scrape configs, and
 * `test rules` on the alerting rules' unit tests. `bash scripts/prometheus.sh ensure` installs it.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { HealthRegistry, healthy } from './health';
import { ThoraxMetrics } from './metrics';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const DEPLOY = path.join(ROOT, 'deploy', 'prometheus');

function promtool(args: string[], input?: string, cwd = ROOT): { status: number | null; output: string } {
  const bin = process.env['PROMTOOL_BIN'] ?? 'promtool';
  const result = spawnSync(bin, args, { input, cwd, encoding: 'utf8' });
  if (result.error) {
    throw new Error(`${bin} not found (${result.error.message}): run \`bash scripts/prometheus.sh ensure\` or set PROMTOOL_BIN`);
  }
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

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

  it('accepts the scrape configs and rules, and passes the rules unit tests', () => {
    const config = promtool(['check', 'config', 'prometheus.yml', 'prometheus.compose.yml'], undefined, DEPLOY);
    expect(config.status).toBe(0);
    const tests = promtool(['test', 'rules', 'tests/thorax.rules.test.yml', 'tests/thorax.drift.test.yml'], undefined, DEPLOY);
    expect(tests.output).not.toContain('FAILED');
    expect(tests.status).toBe(0);
    expect(tests.output.match(/SUCCESS/g)).toHaveLength(2);
  });
});
