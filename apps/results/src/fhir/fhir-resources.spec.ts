import { CHESTXRAY14_LABELS } from '@thorax/contracts';
import type { StoredStudy } from '../store/results-store.port';
import { aggregateStudy } from '../domain/study-aggregate';
import { errorEvent, okEvent } from '../testing/findings-events';
import { LABEL_CODES } from './fhir-codes';
import { isDicomUid, studyResources } from './fhir-resources';

const stored = (events: ReturnType<typeof okEvent>[], version = 1): StoredStudy => ({
  seq: 1n,
  version,
  publishedVersion: 0,
  updatedAt: new Date('2026-11-30T11:00:00Z'),
  result: aggregateStudy(events[0]!.study.studyUid ?? 'S', events.map((event, i) => ({ seq: BigInt(i + 1), event }))),
});

describe('studyResources', () => {
  const study = { studyUid: '1.2.840.7', accession: 'A-7', patientId: 'P-7' };

  it('codes the report by the number of distinct views', () => {
    const single = studyResources(stored([okEvent('a', { study: { ...study, viewPosition: 'PA' } })]), {});
    expect(single.report['code']).toMatchObject({ coding: [{ code: '36554-4' }] });
    const two = studyResources(stored([okEvent('a', { study: { ...study, viewPosition: 'PA' } }), okEvent('b', { study: { ...study, viewPosition: 'LL' } })]), {});
    expect(two.report['code']).toMatchObject({ coding: [{ code: '36643-5' }] });
  });

  it('one Observation per label, NIH label as text, only reliable codes, AI-asserted and versioned', () => {
    const { observations, report } = studyResources(stored([okEvent('a', { study: { ...study, viewPosition: 'PA' } })], 4), {});
    expect(observations.map((o) => (o['code'] as { text: string }).text)).toEqual([...CHESTXRAY14_LABELS]);
    for (const observation of observations) {
      const label = (observation['code'] as { text: string }).text;
      const coding = (observation['code'] as { coding?: { code: string }[] }).coding;
      expect({ label, code: coding?.[0]?.code ?? null }).toEqual({ label, code: LABEL_CODES[label]?.coding?.code ?? null });
      expect(observation['meta']).toMatchObject({ versionId: '4', security: [{ code: 'AIAST' }] });
      expect(observation['id']).toMatch(/^[A-Za-z0-9\-.]{1,64}$/);
    }
    expect(Object.values(LABEL_CODES).filter((c) => c.coding && c.unverified)).toEqual([]);
    expect((report['result'] as unknown[]).length).toBe(14);
  });

  it('the ImagingStudy carries the UID as urn:oid only when it is one', () => {
    expect(isDicomUid('1.2.840.10008.5.1.4.1.1.1')).toBe(true);
    expect(isDicomUid('1.02.3')).toBe(false);
    expect(isDicomUid('study-7')).toBe(false);
    expect(isDicomUid(`1.${'2'.repeat(70)}`)).toBe(false);
    const dicom = studyResources(stored([okEvent('a', { study })]), {}).imagingStudy;
    expect(dicom['identifier']).toEqual([{ system: 'urn:dicom:uid', value: 'urn:oid:1.2.840.7' }, { type: expect.anything(), value: 'A-7' }]);
    const keyed = studyResources(stored([okEvent('a', { study: { studyUid: 'study-7' } })]), {}).imagingStudy;
    expect(keyed['identifier']).toEqual([{ value: 'study-7' }]);
  });

  it('a study without any analysed image is a cancelled report without results or a device', () => {
    const resources = studyResources(stored([errorEvent('x', { study })]), {});
    expect(resources.report).toMatchObject({ status: 'cancelled' });
    expect(resources.report).not.toHaveProperty('result');
    expect(resources.observations).toEqual([]);
    expect(resources.device).toBeNull();
  });

  it('escapes study data in the narrative', () => {
    const model = { name: 'm<script>', version: '1&2', sha256: 'a'.repeat(64) };
    const event = { ...okEvent('a', { study }), model };
    const { report, device } = studyResources(stored([event]), {});
    expect((report['text'] as { div: string }).div).not.toContain('<script>');
    expect((device!['text'] as { div: string }).div).toContain('m&lt;script&gt;');
  });

  it('says what the model was trained on in the Device, every Observation and the report', () => {
    const note = 'Demonstration model trained on synthetic images; not for clinical use.';
    const { device, observations, report } = studyResources(stored([okEvent('a', { study })]), {});
    expect(device).toMatchObject({
      property: [
        { type: { text: 'Training data' }, valueCode: [{ text: 'synthetic' }] },
        { type: { text: 'Validated for clinical use' }, valueCode: [{ text: 'no' }] },
      ],
      note: [{ text: note }],
    });
    expect((device!['text'] as { div: string }).div).toContain(note);
    expect(observations).toHaveLength(14);
    for (const observation of observations) expect(observation['note']).toEqual([{ text: 'From image a.' }, { text: note }]);
    expect(report['conclusion']).toMatch(/not reviewed by a radiologist\. Demonstration model trained on synthetic images; not for clinical use\.$/);
  });

  it('a result stored before provenance existed reads as unknown training data, never as clinical', () => {
    const event = okEvent('a', { study });
    const { provenance: _none, ...legacy } = event.model!;
    const { device, observations } = studyResources(stored([{ ...event, model: legacy }]), {});
    const note = 'Model of unknown training data; not validated for clinical use.';
    expect(device).toMatchObject({ property: [{ valueCode: [{ text: 'unknown' }] }, { valueCode: [{ text: 'no' }] }], note: [{ text: note }] });
    expect(observations[0]!['note']).toEqual([{ text: 'From image a.' }, { text: note }]);
  });
});
