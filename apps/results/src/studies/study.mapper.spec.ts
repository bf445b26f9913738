import type { StoredStudy } from '../store/results-store.port';
import { errorEvent, okEvent, SYNTHETIC_PROVENANCE } from '../testing/findings-events';
import { aggregateStudy } from '../domain/study-aggregate';
import { toStudyBody, toStudyMessage } from './study.mapper';

const stored = (events: ReturnType<typeof okEvent>[]): StoredStudy => ({
  seq: 1n,
  version: 2,
  publishedVersion: 0,
  updatedAt: new Date('2026-11-30T11:00:00Z'),
  result: aggregateStudy('1.2.3', events.map((event, i) => ({ seq: BigInt(i + 1), event }))),
});

describe('study mappers', () => {
  it('REST and gRPC state what the study model was trained on', () => {
    const study = stored([okEvent('a'), errorEvent('b')]);
    const body = toStudyBody(study);
    expect(body.model).toEqual({ name: 'chexnet-densenet121', version: '2026.11.30-1', sha256: 'a'.repeat(64), provenance: SYNTHETIC_PROVENANCE });
    expect(Object.keys(body.model ?? {})).toEqual(['name', 'version', 'sha256', 'provenance']);
    expect(toStudyMessage(study).model).toEqual({
      name: 'chexnet-densenet121',
      version: '2026.11.30-1',
      sha256: 'a'.repeat(64),
      provenance: { ...SYNTHETIC_PROVENANCE, dataset: 'thorax-synthetic-cxr' },
    });
  });

  it('a study stored before provenance existed has none (gRPC: unset), and no model has none either', () => {
    const event = okEvent('a');
    const { provenance: _none, ...legacy } = event.model!;
    const old = stored([{ ...event, model: legacy }]);
    expect(toStudyBody(old).model).not.toHaveProperty('provenance');
    expect(toStudyMessage(old).model?.provenance).toBeUndefined();
    expect(toStudyBody(stored([errorEvent('x')])).model).toBeNull();
    expect(toStudyMessage(stored([errorEvent('x')])).model).toBeUndefined();
  });
});
