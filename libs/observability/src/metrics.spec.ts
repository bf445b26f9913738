import { HealthRegistry, healthy, unhealthy } from './health';
import { findIdLikeLabelValues, parseSamples } from '@thorax/testing';
import { DROPPED_DEFAULT_METRICS, ThoraxMetrics } from './metrics';

/** Label names of every sample of a family, with `service` (and `le` for buckets) included. */
async function labelNamesOf(metrics: ThoraxMetrics, family: string): Promise<string[]> {
  const samples = parseSamples(await metrics.registry.metrics()).filter(
    (s) => s.name === family || s.name === `${family}_bucket` || s.name === `${family}_count`,
  );
  expect(samples.length).toBeGreaterThan(0);
  return [...new Set(samples.flatMap((s) => Object.keys(s.labels)))].filter((l) => l !== 'le').sort();
}

function populate(m: ThoraxMetrics): void {
  m.messages.inc({ topic: 'thorax.studies.v1', outcome: 'ok' });
  m.stageDuration.observe({ stage: 'decode' }, 0.02);
  m.inferenceBatchSize.observe({ model: 'thorax-tiny-cnn', version: '2026.11.30-1' }, 8);
  m.inferenceDuration.observe({ model: 'thorax-tiny-cnn', version: '2026.11.30-1', provider: 'cpu' }, 0.05);
  m.endToEndLatency.observe(0.4);
  m.consumerLag.set({ topic: 'thorax.images.v1', partition: '3', group: 'thorax-preprocess' }, 12);
  m.modelInfo.set({ model: 'thorax-tiny-cnn', version: '2026.11.30-1', provider: 'cpu' }, 1);
  m.findings.inc({ label: 'Cardiomegaly', positive: 'true' });
}

describe('ThoraxMetrics', () => {
  it('exports the minimum set of docs/contract.md with exactly its names, types and labels, service on every series', async () => {
    const m = new ThoraxMetrics('inference');
    populate(m);
    const design: [string, string, string[]][] = [
      ['thorax_messages_total', 'counter', ['topic', 'outcome']],
      ['thorax_stage_duration_seconds', 'histogram', ['stage']],
      ['thorax_inference_batch_size', 'histogram', ['model', 'version']],
      ['thorax_inference_duration_seconds', 'histogram', ['model', 'version', 'provider']],
      ['thorax_end_to_end_latency_seconds', 'histogram', []],
      ['thorax_consumer_lag', 'gauge', ['topic', 'partition', 'group']],
      ['thorax_model_info', 'gauge', ['model', 'version', 'provider']],
      ['thorax_findings_total', 'counter', ['label', 'positive']],
    ];
    const text = await m.registry.metrics();
    for (const [name, type, labels] of design) {
      const family = name.replace(/_total$/, '');
      expect(text).toContain(`# TYPE ${type === 'counter' ? name : family} ${type}`);
      expect({ name, labels: await labelNamesOf(m, name) }).toEqual({ name, labels: [...labels, 'service'].sort() });
    }
    for (const sample of parseSamples(text)) expect({ name: sample.name, service: sample.labels['service'] }).toEqual({ name: sample.name, service: 'inference' });
  });

  it('keeps prom-client process and runtime defaults, minus the gauges named like counters', async () => {
    const names = await new ThoraxMetrics('ingest').sampleNames();
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(names).toContain(name);
    }
    for (const name of DROPPED_DEFAULT_METRICS) expect(names).not.toContain(name);
    expect(names).toContain('thorax_end_to_end_latency_seconds_bucket');
    expect(names).toContain('thorax_queue_depth');
  });

  it('reports readiness and each health check at scrape time once bound to the health registry', async () => {
    const m = new ThoraxMetrics('results');
    const health = new HealthRegistry();
    let storeUp = false;
    health.addLiveness('consumer:thorax.findings.v1', () => healthy);
    health.addReadiness('consumer:thorax.findings.v1', () => healthy);
    health.addReadiness('results-store', () => (storeUp ? healthy : unhealthy('down')));
    m.bindHealth(health);
    const value = async (name: string, labels: Record<string, string> = {}) =>
      parseSamples(await m.registry.metrics()).find(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      )?.value;
    expect(await value('thorax_ready')).toBe('0');
    expect(await value('thorax_health_check_up', { probe: 'readiness', check: 'results-store' })).toBe('0');
    expect(await value('thorax_health_check_up', { probe: 'liveness', check: 'consumer:thorax.findings.v1' })).toBe('1');
    storeUp = true;
    await new Promise((r) => setTimeout(r, 1100)); // past the one-second snapshot
    expect(await value('thorax_ready')).toBe('1');
    expect(await value('thorax_health_check_up', { probe: 'readiness', check: 'results-store' })).toBe('1');
  });

  it('observes end-to-end latency from a carried receipt time and ignores unusable stamps', async () => {
    const m = new ThoraxMetrics('results');
    const now = new Date('2026-11-30T10:00:02.500Z');
    m.observeEndToEnd('2026-11-30T10:00:00.000Z', now);
    m.observeEndToEnd(new Date('2026-11-30T10:00:01.000Z'), now);
    m.observeEndToEnd('not a date', now);
    m.observeEndToEnd('2026-11-30T10:00:03.000Z', now); // clock skew: in the future
    const samples = parseSamples(await m.registry.metrics());
    expect(samples.find((s) => s.name === 'thorax_end_to_end_latency_seconds_count')?.value).toBe('2');
    expect(Number(samples.find((s) => s.name === 'thorax_end_to_end_latency_seconds_sum')?.value)).toBeCloseTo(4, 6);
  });

  it('times a stage, failures included', async () => {
    const m = new ThoraxMetrics('preprocess');
    await m.time('decode', async () => 1);
    await expect(m.time('decode', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    const count = parseSamples(await m.registry.metrics()).find((s) => s.name === 'thorax_stage_duration_seconds_count');
    expect(count).toMatchObject({ labels: { stage: 'decode' }, value: '2' });
  });

  it('has no id-like label values when fed the way the services feed it', async () => {
    const m = new ThoraxMetrics('inference');
    populate(m);
    m.errors.inc({ stage: 'ingest', code: 'UNSUPPORTED_MEDIA_TYPE' });
    m.queueDepth.set({ stage: 'inference', model: 'thorax-tiny-cnn', version: '2026.11.30-1' }, 17);
    m.consumerBatchSize.observe({ topic: 'thorax.tensors.v1' }, 40);
    m.buildInfo.set({ version: '0.1.0' }, 1);
    expect(findIdLikeLabelValues(await m.registry.metrics())).toEqual([]);
  });
});
