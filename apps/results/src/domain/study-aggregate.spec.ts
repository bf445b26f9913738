import type { FindingsEvent } from '@thorax/contracts';
import { errorEvent, okEvent } from '../testing/findings-events';
import { aggregateStudy, classifyView, type StudyRow } from './study-aggregate';

const rows = (...events: FindingsEvent[]): StudyRow[] => events.map((event, i) => ({ seq: BigInt(i + 1), event }));
const at = (viewPosition: string | undefined, id: string, probabilities: Record<string, number>, version?: string): FindingsEvent =>
  okEvent(id, { study: { studyUid: 'S', ...(viewPosition === undefined ? {} : { viewPosition }) }, positives: [], probabilities, ...(version ? { version } : {}) });

describe('classifyView', () => {
  it('PA and AP are frontal, empty is unknown, any other view is not frontal', () => {
    expect(['PA', 'ap', ' AP '].map(classifyView)).toEqual(['frontal', 'frontal', 'frontal']);
    expect(['LL', 'RL', 'LATERAL', 'LLD'].map(classifyView)).toEqual(['other', 'other', 'other', 'other']);
    expect(['', '  ', null, undefined].map(classifyView)).toEqual(['unknown', 'unknown', 'unknown', 'unknown']);
  });
});

describe('aggregateStudy', () => {
  it('takes per label the maximum over frontal images and names the image it came from', () => {
    const result = aggregateStudy('S', rows(at('PA', 'a', { Mass: 0.2, Edema: 0.7 }), at('AP', 'b', { Mass: 0.6, Edema: 0.1 }), at('LL', 'c', { Mass: 0.99 })));
    const mass = result.findings.find((f) => f.label === 'Mass');
    const edema = result.findings.find((f) => f.label === 'Edema');
    expect(mass).toEqual({ label: 'Mass', probability: 0.6, threshold: 0.5, positive: true, imageId: 'b' });
    expect(edema).toEqual({ label: 'Edema', probability: 0.7, threshold: 0.5, positive: true, imageId: 'a' });
    expect(result.positives).toEqual(['Mass', 'Edema']);
    expect(result.contributingImages).toEqual(['a', 'b']);
    expect(result.images.find((i) => i.id === 'c')).toMatchObject({ contributed: false, excluded: 'not-frontal' });
    expect(result.findings).toHaveLength(14);
  });

  it('a probability equal to the threshold is positive (as in the event)', () => {
    const result = aggregateStudy('S', rows(at('PA', 'a', { Hernia: 0.5 })));
    expect(result.findings.find((f) => f.label === 'Hernia')?.positive).toBe(true);
  });

  it('uses images without a view only when none is known to be frontal', () => {
    expect(aggregateStudy('S', rows(at(undefined, 'a', {}), at('LL', 'b', {}))).contributingImages).toEqual(['a']);
    const withFrontal = aggregateStudy('S', rows(at(undefined, 'a', {}), at('PA', 'b', {})));
    expect(withFrontal.contributingImages).toEqual(['b']);
    expect(withFrontal.images.find((i) => i.id === 'a')?.excluded).toBe('view-unknown');
  });

  it('has no findings and status error when nothing can contribute', () => {
    for (const input of [rows(errorEvent('x')), rows(at('LL', 'l', {}))]) {
      const result = aggregateStudy('S', input);
      expect(result).toMatchObject({ status: 'error', findings: [], positives: [], contributingImages: [] });
    }
    expect(aggregateStudy('S', rows(errorEvent('x'))).model).toBeNull();
  });

  it('keeps an image analysed by the study model even if a later attempt failed', () => {
    const result = aggregateStudy('S', rows(at('PA', 'a', { Mass: 0.9 }), errorEvent('a')));
    expect(result.contributingImages).toEqual(['a']);
    expect(result.images).toEqual([{ id: 'a', viewPosition: 'PA', status: 'ok', modelVersion: '2026.11.30-1', contributed: true, excluded: null, errorCode: null }]);
  });

  it('is the same document whatever order equal rows arrive in, so redeliveries change nothing', () => {
    const a = at('PA', 'a', { Mass: 0.3 });
    const b = at('AP', 'b', { Mass: 0.4 });
    expect(aggregateStudy('S', rows(a, b))).toEqual(aggregateStudy('S', rows(b, a)));
    expect(aggregateStudy('S', rows(a, b)).timing).toEqual({ firstReceivedAt: '2026-11-30T10:00:00.000Z', lastCompletedAt: '2026-11-30T10:00:00.412Z' });
  });

  it('reads rows by seq whatever order they are handed in, and times from the earliest receipt to the latest completion', () => {
    const received = (id: string, iso: string, accession: string): FindingsEvent =>
      okEvent(id, { study: { studyUid: 'S', accession, viewPosition: 'PA' }, receivedAt: new Date(iso) });
    const inSeqOrder: StudyRow[] = [
      { seq: 5n, event: received('a', '2026-11-30T10:00:05.000Z', 'A1') },
      { seq: 7n, event: received('b', '2026-11-30T09:59:00.000Z', 'A2') },
      { seq: 9n, event: received('c', '2026-11-30T10:01:00.000Z', 'A3') },
    ];
    const shuffled = [inSeqOrder[2]!, inSeqOrder[0]!, inSeqOrder[1]!];
    const result = aggregateStudy('S', shuffled);
    expect(result).toEqual(aggregateStudy('S', inSeqOrder));
    expect(result.accession).toBe('A3'); // the highest seq's
    expect(result.timing).toEqual({ firstReceivedAt: '2026-11-30T09:59:00.000Z', lastCompletedAt: '2026-11-30T10:01:00.412Z' });
  });

  it('takes the latest accession and patient id that were sent', () => {
    const first = okEvent('a', { study: { studyUid: 'S', accession: 'OLD', patientId: 'P1', viewPosition: 'PA' } });
    const second = okEvent('b', { study: { studyUid: 'S', accession: 'NEW', viewPosition: 'PA' } });
    expect(aggregateStudy('S', rows(first, second))).toMatchObject({ accession: 'NEW', patientId: 'P1' });
  });
});
