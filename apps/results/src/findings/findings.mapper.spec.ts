import { assertFindingsEvent, CHESTXRAY14_LABELS, FindingsStatus } from '@thorax/contracts';
import { errorEvent, okEvent, SYNTHETIC_PROVENANCE } from '../testing/findings-events';
import { contractOrder, toFindingsResult } from './findings.mapper';

const storedAt = new Date('2026-11-30T10:00:01.000Z');

describe('toFindingsResult', () => {
  it('maps an ok event to the proto message', () => {
    const result = toFindingsResult({ seq: 7n, event: okEvent('img-1', { positives: ['Effusion', 'Mass'] }), storedAt });
    expect(result.id).toBe('img-1');
    expect(result.status).toBe(FindingsStatus.FINDINGS_STATUS_OK);
    expect(result.study).toEqual({
      studyUid: '1.2.3',
      seriesUid: '',
      sopInstanceUid: '',
      accession: 'ACC-1',
      patientId: 'P-1',
      viewPosition: 'PA',
      modality: '',
      bodyPart: '',
    });
    expect(result.model).toEqual({
      name: 'chexnet-densenet121',
      version: '2026.11.30-1',
      sha256: 'a'.repeat(64),
      provenance: {
        data: 'synthetic',
        clinical: false,
        dataset: 'thorax-synthetic-cxr',
        note: 'Demonstration model trained on synthetic images; not for clinical use.',
      },
    });
    expect(result.findings.map((f) => f.label)).toEqual([...CHESTXRAY14_LABELS]);
    expect(result.findings[2]).toEqual({ label: 'Effusion', probability: 0.83, threshold: 0.5, positive: true });
    expect(result.positives).toEqual(['Effusion', 'Mass']);
    expect(result.timing).toEqual({
      receivedAt: new Date('2026-11-30T10:00:00.000Z'),
      completedAt: new Date('2026-11-30T10:00:00.412Z'),
      latencyMs: 412,
    });
    expect(result.error).toBeUndefined();
    expect(result.storedAt).toEqual(storedAt);
  });

  it('maps an error event: error status, no model, no findings, the error block', () => {
    const result = toFindingsResult({ seq: 8n, event: errorEvent('img-2'), storedAt });
    expect(result.status).toBe(FindingsStatus.FINDINGS_STATUS_ERROR);
    expect(result.model).toBeUndefined();
    expect(result.findings).toEqual([]);
    expect(result.error).toEqual({ code: 'CORRUPT_IMAGE', stage: 'preprocess', message: 'truncated PNG' });
    expect(result.study?.patientId).toBe('');
  });
});

describe('contractOrder', () => {
  it('restores the key order of the contract and stays a valid event', () => {
    const event = okEvent('img-1');
    // jsonb hands keys back in its own order (by length, then bytewise), not the contract's.
    const shuffled = reverseKeys(event) as typeof event;
    expect(Object.keys(shuffled)[0]).not.toBe('schema');
    const ordered = contractOrder(shuffled);
    expect(Object.keys(ordered)).toEqual(['schema', 'id', 'status', 'study', 'model', 'findings', 'positives', 'timing', 'error']);
    expect(Object.keys(ordered.study)).toEqual(['studyUid', 'accession', 'patientId', 'viewPosition']);
    expect(ordered).toEqual(event);
    expect(() => assertFindingsEvent(ordered)).not.toThrow();
    expect(() => assertFindingsEvent(contractOrder(errorEvent('img-2')))).not.toThrow();
  });

  it('keeps the model provenance in the contract order; old events without it stay without it', () => {
    const ordered = contractOrder(reverseKeys(okEvent('img-1')) as ReturnType<typeof okEvent>);
    expect(Object.keys(ordered.model ?? {})).toEqual(['name', 'version', 'sha256', 'provenance']);
    expect(Object.keys(ordered.model?.provenance ?? {})).toEqual(['data', 'clinical', 'dataset', 'note']);
    expect(ordered.model?.provenance).toEqual(SYNTHETIC_PROVENANCE);
    const event = okEvent('img-0');
    const { provenance: _none, ...legacy } = event.model!;
    const old = contractOrder({ ...event, model: legacy });
    expect(old.model).not.toHaveProperty('provenance');
    expect(() => assertFindingsEvent(old)).not.toThrow();
    expect(toFindingsResult({ seq: 1n, event: { ...event, model: legacy }, storedAt }).model?.provenance).toBeUndefined();
  });
});

function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).reverse().map(([k, v]) => [k, reverseKeys(v)]));
}
