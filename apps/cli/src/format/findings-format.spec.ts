import type { FindingsEvent } from '@thorax/contracts';
import { formatFindingsLine, matchesFilter, summaryTable } from './findings-format';
import { formatBytes, formatMs, percentile, renderTable } from './table';

function event(id: string, over: Partial<FindingsEvent> = {}): FindingsEvent {
  return {
    schema: 'thorax.findings.v1',
    id,
    status: 'ok',
    study: { studyUid: null, accession: null, patientId: null, viewPosition: null } as unknown as FindingsEvent['study'],
    model: { name: 'thorax-tiny-cnn', version: '2.0.0', sha256: 'a'.repeat(64), provider: 'cpu' } as FindingsEvent['model'],
    findings: [
      { label: 'Effusion', probability: 0.91, threshold: 0.5, positive: true },
      { label: 'Mass', probability: 0.1, threshold: 0.5, positive: false },
    ],
    positives: ['Effusion'],
    timing: { receivedAt: '2026-11-30T10:00:00.000Z', completedAt: '2026-11-30T10:00:00.412Z', latencyMs: 412 },
    error: null,
    ...over,
  };
}

const failed = event('bad', {
  status: 'error',
  model: null,
  findings: [],
  positives: [],
  error: { code: 'UNSUPPORTED_MODALITY', stage: 'ingest', message: 'modality CT is not one of CR, DX' },
});

describe('findings filters', () => {
  it('keeps positives, a positive label (any case), a status and ids', () => {
    const none = event('n', { positives: [] });
    expect(matchesFilter(event('a'), { positives: true })).toBe(true);
    expect(matchesFilter(none, { positives: true })).toBe(false);
    expect(matchesFilter(event('a'), { label: 'effusion' })).toBe(true);
    expect(matchesFilter(event('a'), { label: 'Mass' })).toBe(false);
    expect(matchesFilter(failed, { status: 'error' })).toBe(true);
    expect(matchesFilter(event('a'), { status: 'error' })).toBe(false);
    expect(matchesFilter(event('a'), { ids: new Set(['b']) })).toBe(false);
  });
});

describe('findings lines', () => {
  it('prints the model version, latency and positives with probabilities', () => {
    expect(formatFindingsLine(event('img-1'))).toBe('2026-11-30T10:00:00.412Z  img-1  ok  thorax-tiny-cnn@2.0.0  412 ms  positive: Effusion 0.91');
  });

  it('prints the error code and stage of an error event', () => {
    expect(formatFindingsLine(failed)).toContain('bad  ERROR  UNSUPPORTED_MODALITY (ingest): modality CT is not one of CR, DX');
  });
});

describe('summary table', () => {
  it('has one row per image in publish order and totals with latency percentiles', () => {
    const events = new Map([
      ['a', event('a')],
      ['bad', failed],
      ['c', event('c', { positives: [], timing: { receivedAt: '', completedAt: '', latencyMs: 1500 } })],
    ]);
    const text = summaryTable(['a', 'bad', 'c', 'lost'], events);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^id\s+status\s+model\s+latency\s+positives \/ error$/);
    expect(lines.slice(2, 6).map((l) => l.split(/\s{2,}/))).toEqual([
      ['a', 'ok', '2.0.0', '412 ms', 'Effusion'],
      ['bad', 'error', '-', '412 ms', 'UNSUPPORTED_MODALITY'],
      ['c', 'ok', '2.0.0', '1.50 s', 'none'],
      ['lost', 'missing', '-', '-', '-'],
    ]);
    expect(lines[6]).toBe('4 images: 2 ok, 1 error, 1 missing; latency p50 412 ms, p95 1.50 s');
  });
});

describe('table helpers', () => {
  it('pads columns, right-aligns numbers on request', () => {
    expect(renderTable(['a', 'n'], [['xx', 5], ['y', 120]], ['left', 'right'])).toBe('a     n\n--  ---\nxx    5\ny   120\n');
  });

  it('formats durations, sizes and nearest-rank percentiles', () => {
    expect([formatMs(85.4), formatMs(1234), formatBytes(512), formatBytes(1536), formatBytes(3 * 1024 * 1024)]).toEqual(['85 ms', '1.23 s', '512 B', '1.5 KiB', '3.0 MiB']);
    expect([percentile([5, 1, 3, 2, 4], 50), percentile([5, 1, 3, 2, 4], 95), percentile([], 50)]).toEqual([3, 5, NaN]);
  });
});
