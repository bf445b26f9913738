import { parsePrometheusText, ratesBetween, sumOf } from './prometheus-text';

const before = `# HELP thorax_messages_total Records handled
# TYPE thorax_messages_total counter
thorax_messages_total{service="ingest",topic="thorax.studies.v1",outcome="ok"} 100
thorax_messages_total{service="ingest",topic="thorax.studies.v1",outcome="dead_lettered"} 4
thorax_errors_total{service="ingest",stage="ingest",code="UNSUPPORTED_MODALITY"} 4
thorax_model_info{service="inference",model="thorax-tiny-cnn",version="2.0.0",provider="cpu"} 1
thorax_odd{label="a \\"quoted\\" value"} 2.5e1
not a sample line
`;
const after = before
  .replace('outcome="ok"} 100', 'outcome="ok"} 130')
  .replace('outcome="dead_lettered"} 4', 'outcome="dead_lettered"} 14')
  .replace('code="UNSUPPORTED_MODALITY"} 4', 'code="UNSUPPORTED_MODALITY"} 14');

describe('Prometheus text', () => {
  it('parses samples with labels, escapes and exponents, skipping comments and junk', () => {
    const samples = parsePrometheusText(before);
    expect(samples).toHaveLength(5);
    expect(samples.find((s) => s.name === 'thorax_model_info')?.labels).toEqual({ service: 'inference', model: 'thorax-tiny-cnn', version: '2.0.0', provider: 'cpu' });
    expect(samples.find((s) => s.name === 'thorax_odd')).toEqual({ name: 'thorax_odd', labels: { label: 'a "quoted" value' }, value: 25 });
    expect(sumOf(samples, 'thorax_messages_total')).toBe(104);
    expect(sumOf(samples, 'thorax_messages_total', { outcome: 'ok' })).toBe(100);
  });

  it('turns two scrapes into rates and a dead-letter share', () => {
    const r = ratesBetween(parsePrometheusText(before), parsePrometheusText(after), 10);
    expect(r.messagesPerSecond).toBeCloseTo(4);
    expect(r.deadLetteredPerSecond).toBeCloseTo(1);
    expect(r.retriedPerSecond).toBe(0);
    expect(r.deadLetterShare).toBeCloseTo(0.25);
    expect(r.errors).toEqual({ 'ingest/UNSUPPORTED_MODALITY': 1 });
    // A restarted service (counters reset) gives no negative rate.
    expect(ratesBetween(parsePrometheusText(after), parsePrometheusText(before), 10).messagesPerSecond).toBe(0);
  });
});
