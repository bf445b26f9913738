import { Counter, Registry } from 'prom-client';
import { findIdLikeLabelValues, parseSamples, seriesPerMetric } from './label-cardinality';

async function exposition(labels: Record<string, string>[]): Promise<string> {
  const registry = new Registry();
  const names = Object.keys(labels[0] ?? {});
  const counter = new Counter({ name: 'thorax_test_total', help: 'test', labelNames: names, registers: [registry] });
  for (const l of labels) counter.inc(l);
  return registry.metrics();
}

describe('label cardinality guard', () => {
  it.each([
    ['an image id that is a DICOM SOP Instance UID', { stage: '1.2.826.0.1.3680043.8.498.1' }],
    ['a UUID', { stage: 'e3b0c442-98fc-1c14-9afb-f4c8996fb924' }],
    ['a trace id', { stage: '4bf92f3577b34da6a3ce929d0e0e4736' }],
    ['a patient id (MRN)', { stage: 'MRN-00123456' }],
    ['a raw URL', { route: 'http://127.0.0.1:8080/v1/findings/abc' }],
    ['a query string', { route: '/v1/findings?studyUid=x' }],
    ['a cursor', { route: 'eyJzZXEiOiIxMjM0NSIsImlkIjoiYWJjZGVmIn0sInYiOjF9' }],
  ])('flags %s', async (_what, labels) => {
    const problems = findIdLikeLabelValues(await exposition([labels]));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ metric: 'thorax_test_total', value: Object.values(labels)[0] });
  });

  it('flags a label named after an identifier, and values containing given forbidden strings', async () => {
    expect(findIdLikeLabelValues(await exposition([{ image_id: 'x' }]))).toMatchObject([{ label: 'image_id' }]);
    expect(findIdLikeLabelValues(await exposition([{ stage: 'run-abc-png' }]), ['run-abc'])).toMatchObject([
      { reason: 'contains run-abc' },
    ]);
  });

  it('accepts the bounded values Thorax uses', async () => {
    const text = await exposition([
      { topic: 'thorax.studies.v1', stage: 'inference', version: '2026.11.30-1', route: '/v1/findings/:id', check: 'consumer:thorax.images.v1' },
      { topic: 'thorax.images.v1.dlq', stage: 'ingest', version: 'v24.11.1', route: 'unmatched', check: 'results-store' },
    ]);
    expect(findIdLikeLabelValues(text)).toEqual([]);
  });

  it('parses escaped label values and counts series per family with buckets folded', () => {
    const text = [
      '# HELP h help',
      '# TYPE h histogram',
      'h_bucket{le="0.1",route="/a"} 1',
      'h_bucket{le="+Inf",route="/a"} 2',
      'h_sum{route="/a"} 0.3',
      'h_count{route="/a"} 2',
      'h_count{route="/b"} 1',
      'g{msg="say \\"hi\\", ok\\\\"} 3',
      'plain 7',
    ].join('\n');
    expect(parseSamples(text).find((s) => s.name === 'g')).toEqual({ name: 'g', labels: { msg: 'say "hi", ok\\' }, value: '3' });
    expect(seriesPerMetric(text)).toEqual(new Map([['h', 2], ['g', 1], ['plain', 1]]));
  });
});
