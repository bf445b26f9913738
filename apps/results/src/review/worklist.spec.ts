import type { FindingsEvent } from '@thorax/contracts';
import { okEvent } from '../testing/findings-events';
import { buildWorklist, referenceOf } from './worklist';

function item(id: string, opts: { study?: string; completedAt: string; positive?: boolean; priority?: 'stat' | 'routine'; reviewed?: string[] }) {
  const base = okEvent(id, { study: opts.study ? { studyUid: opts.study, accession: 'ACC-1', patientId: 'PAT-1' } : {} });
  const findings = base.findings.map((f, i) => ({ ...f, probability: opts.positive && i === 1 ? 0.9 : 0.01, positive: !!opts.positive && i === 1 }));
  const event: FindingsEvent = {
    ...base,
    ...(opts.priority ? { priority: opts.priority } : {}),
    findings,
    positives: findings.filter((f) => f.positive).map((f) => f.label),
    timing: { ...base.timing, completedAt: opts.completedAt },
  };
  return { seq: 1n, event, reviewedLabels: opts.reviewed ?? [] };
}

describe('review worklist', () => {
  const items = [
    item('a', { completedAt: '2026-11-30T10:05:00.000Z' }),
    item('b', { completedAt: '2026-11-30T10:04:00.000Z', positive: true }),
    item('c1', { study: '1.2.3', completedAt: '2026-11-30T10:01:00.000Z' }),
    item('c2', { study: '1.2.3', completedAt: '2026-11-30T10:02:00.000Z', priority: 'stat', reviewed: ['Mass'] }),
    item('d', { completedAt: '2026-11-30T10:06:00.000Z', positive: true }),
  ];

  it('orders STAT first, then studies with a positive finding, then the newest', () => {
    const list = buildWorklist(items, { showPatient: false, limit: 10 });
    expect(list.map((s) => s.images.map((i) => i.id).join('+'))).toEqual(['c1+c2', 'd', 'b', 'a']);
    expect(list[0]).toMatchObject({ priority: 'stat', completedAt: '2026-11-30T10:02:00.000Z', ref: referenceOf('1.2.3') });
    expect(list[0]?.images[1]?.reviewedLabels).toEqual(['Mass']);
    expect(list[1]?.positives).toEqual([items[4]?.event.findings[1]?.label]);
  });

  it('shows no identifiers unless asked, and caps the list', () => {
    const hidden = buildWorklist(items, { showPatient: false, limit: 2 });
    expect(hidden).toHaveLength(2);
    expect(JSON.stringify(hidden)).not.toMatch(/ACC-1|PAT-1|1\.2\.3/);
    const shown = buildWorklist(items, { showPatient: true, limit: 10 });
    expect(shown[0]).toMatchObject({ studyUid: '1.2.3', accession: 'ACC-1', patientId: 'PAT-1' });
  });
});
