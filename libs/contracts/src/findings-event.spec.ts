import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ERROR_CODES, ThoraxError } from './error-codes';
import {
  assertFindingsEvent,
  decodeFindingsEvent,
  encodeFindingsEvent,
  errorFindingsEvent,
  findingsEventJsonSchema,
  okFindingsEvent,
} from './findings-event';
import { CHESTXRAY14_LABELS } from './labels';
import { provenanceNote } from './model-provenance';

const provenance = {
  data: 'synthetic',
  clinical: false,
  dataset: 'thorax-synthetic-cxr',
  note: 'Demonstration model trained on synthetic images; not for clinical use.',
};
const model = { name: 'thorax-tiny-cnn', version: '2026.11.30-1', sha256: 'a'.repeat(64), provenance };
const receivedAt = new Date('2026-11-30T10:00:00.000Z');
const activationMaps = {
  uri: 's3://bucket/review/1.2.3/v/cam.bin',
  format: 'thorax.cam.v1' as const,
  labels: [...CHESTXRAY14_LABELS],
  height: 7,
  width: 7,
  region: { top: 16, left: 16, height: 224, width: 224 },
};

function ok(probabilities: number[]) {
  return okFindingsEvent({
    id: '1.2.3',
    receivedAt,
    completedAt: new Date('2026-11-30T10:00:00.412Z'),
    model,
    labels: CHESTXRAY14_LABELS,
    thresholds: CHESTXRAY14_LABELS.map(() => 0.5),
    probabilities,
  });
}

describe('thorax.findings.v1', () => {
  it('builds a valid ok event with all labels in model order and the positives', () => {
    const event = ok(CHESTXRAY14_LABELS.map((_, i) => (i === 1 ? 0.83 : 0.1)));
    expect(event.findings).toHaveLength(14);
    expect(event.positives).toEqual(['Cardiomegaly']);
    expect(event.timing.latencyMs).toBe(412);
    expect(decodeFindingsEvent(encodeFindingsEvent(event))).toEqual(event);
  });

  it('refuses NaN and out-of-range probabilities (never the string "NaN")', () => {
    expect(() => ok(CHESTXRAY14_LABELS.map(() => Number.NaN))).toThrow(ThoraxError);
    expect(() => ok(CHESTXRAY14_LABELS.map(() => 1.5))).toThrow(/INFERENCE_FAILED|model produced/);
  });

  it('builds a valid error event with empty findings', () => {
    const event = errorFindingsEvent({ id: 'x', receivedAt, error: { code: 'CORRUPT_IMAGE', stage: 'preprocess', message: 'bad' } });
    expect(() => assertFindingsEvent(event)).not.toThrow();
    expect(event.findings).toEqual([]);
  });

  it('rejects events that break the schema', () => {
    const event = ok(CHESTXRAY14_LABELS.map(() => 0.2));
    expect(() => assertFindingsEvent({ ...event, status: 'maybe' })).toThrow(/status/);
    expect(() => assertFindingsEvent({ ...event, error: { code: 'NOPE', stage: 'ingest', message: '' } })).toThrow();
    expect(() => assertFindingsEvent({ ...event, findings: [] })).toThrow();
    expect(() => assertFindingsEvent({ ...event, extra: 1 })).toThrow();
    expect(() => decodeFindingsEvent(Buffer.from('NaN'))).toThrow();
  });

  it('keeps the schema, the code enum and docs/error-codes.md in step', () => {
    const codes = Object.keys(ERROR_CODES).sort();
    const schema = findingsEventJsonSchema as { properties: { error: { oneOf: { properties?: { code: { enum: string[] } } }[] } } };
    const schemaCodes = schema.properties.error.oneOf.find((s) => s.properties)?.properties?.code.enum ?? [];
    expect([...schemaCodes].sort()).toEqual(codes);
    const doc = readFileSync(path.resolve(__dirname, '../../../docs/error-codes.md'), 'utf8');
    const documented = [...doc.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]).sort();
    expect(documented).toEqual(codes);
  });

  it('carries the model provenance; events written before it existed still validate', () => {
    const event = ok(CHESTXRAY14_LABELS.map(() => 0.2));
    expect(decodeFindingsEvent(encodeFindingsEvent(event)).model?.provenance).toEqual(provenance);
    const { provenance: _dropped, ...legacyModel } = model;
    expect(() => assertFindingsEvent({ ...event, model: legacyModel })).not.toThrow();
    const broken = (p: object) => () => assertFindingsEvent({ ...event, model: { ...model, provenance: p } });
    expect(broken({ ...provenance, data: '' })).toThrow(/provenance\/data/);
    expect(broken({ ...provenance, data: 'Synthetic Images' })).toThrow(/provenance\/data/);
    expect(broken({ ...provenance, clinical: 'no' })).toThrow(/provenance\/clinical/);
    expect(broken({ data: 'synthetic', clinical: false })).toThrow(/dataset|note/);
    expect(broken({ ...provenance, extra: 1 })).toThrow(/additional/);
  });

  it('states in words what a model is for', () => {
    expect(provenanceNote({ data: 'synthetic', clinical: false })).toBe('Demonstration model trained on synthetic images; not for clinical use.');
    expect(provenanceNote({ data: 'synthetic', clinical: true })).toMatch(/not for clinical use/);
    expect(provenanceNote({ data: 'nih-chestxray14', clinical: false })).toBe('Research model trained on NIH ChestX-ray14; not validated for clinical use.');
    expect(provenanceNote({ data: 'unknown', clinical: false })).toMatch(/unknown training data; not validated/);
    expect(provenanceNote({ data: 'site-a', clinical: true })).toMatch(/declared clinically validated/);
  });
});

describe('thorax.findings.v1 review additions (priority, wireImage, heatmaps)', () => {
  const base = () => ({ ...ok(CHESTXRAY14_LABELS.map((_, i) => (i === 1 ? 0.83 : 0.1))) });

  it('accepts an event with the wire image, one heatmap per positive label and a priority', () => {
    const event = {
      ...base(),
      priority: 'stat',
      wireImage: { uri: 'file:///var/lib/thorax/objects/review/1.2.3/wire.png', width: 256, height: 256 },
      heatmaps: [{ label: 'Cardiomegaly', uri: 's3://bucket/review/1.2.3/cardiomegaly.png' }],
    };
    expect(() => assertFindingsEvent(event)).not.toThrow();
    expect(() => assertFindingsEvent({ ...event, wireImage: null, heatmaps: [] })).not.toThrow();
  });

  it('still accepts events of older producers without them', () => {
    const event = base();
    expect(event).not.toHaveProperty('wireImage');
    expect(() => assertFindingsEvent(event)).not.toThrow();
  });

  it('rejects malformed additions', () => {
    expect(() => assertFindingsEvent({ ...base(), priority: 'urgent' })).toThrow(/priority/);
    expect(() => assertFindingsEvent({ ...base(), wireImage: { uri: 'x', width: 0, height: 256 } })).toThrow(/wireImage/);
    expect(() => assertFindingsEvent({ ...base(), heatmaps: [{ label: 'Mass' }] })).toThrow(/heatmaps/);
    expect(() => assertFindingsEvent({ ...base(), heatmaps: [{ label: 'Mass', uri: 'u', png: 'x' }] })).toThrow(/heatmaps/);
  });

  it('the builder carries the priority it is given', () => {
    const event = okFindingsEvent({
      id: '1', receivedAt, model, labels: ['Mass'], thresholds: [0.5], probabilities: [0.9], priority: 'stat',
    });
    expect(event.priority).toBe('stat');
    expect(() => assertFindingsEvent(event)).not.toThrow();
  });

  it('the builder carries the review objects (wire image, activation maps) and no heatmaps; an error event carries none', () => {
    const wireImage = { uri: 'file:///var/lib/thorax/objects/review/1/v/wire.png', width: 256, height: 256 };
    const event = okFindingsEvent({
      id: '1', receivedAt, model, labels: ['Mass'], thresholds: [0.5], probabilities: [0.9], review: { wireImage, activationMaps: { ...activationMaps, labels: ['Mass'] } },
    });
    const decoded = decodeFindingsEvent(encodeFindingsEvent(event));
    expect(decoded).toMatchObject({ wireImage, activationMaps: { ...activationMaps, labels: ['Mass'] } });
    expect(decoded).not.toHaveProperty('heatmaps');
    // Nothing kept: wireImage null, no maps.
    const none = okFindingsEvent({ id: '1', receivedAt, model, labels: ['Mass'], thresholds: [0.5], probabilities: [0.9], review: { wireImage: null, activationMaps: null } });
    expect(none.wireImage).toBeNull();
    expect(none).not.toHaveProperty('activationMaps');
    const failed = errorFindingsEvent({ id: 'x', receivedAt, error: { code: 'CORRUPT_IMAGE', stage: 'preprocess', message: 'bad' } });
    expect(() => assertFindingsEvent({ ...failed, wireImage: null, heatmaps: [] })).not.toThrow();
    expect(() => assertFindingsEvent({ ...failed, wireImage })).toThrow(/wireImage/);
    expect(() => assertFindingsEvent({ ...failed, heatmaps: [{ label: 'Mass', uri: 'u' }] })).toThrow(/heatmaps/);
    expect(() => assertFindingsEvent({ ...failed, activationMaps })).toThrow(/activationMaps/);
  });
});

describe('thorax.findings.v1 activationMaps', () => {
  const base = () => ({ ...ok(CHESTXRAY14_LABELS.map((_, i) => (i === 1 ? 0.83 : 0.1))) });
  const wireImage = { uri: 's3://bucket/review/1.2.3/v/wire.png', width: 256, height: 256 };

  it('accepts every label of the model, with or without the heatmaps of older producers', () => {
    expect(() => assertFindingsEvent({ ...base(), wireImage, activationMaps })).not.toThrow();
    // heatmaps stays valid: results still serves events that carry them.
    expect(() => assertFindingsEvent({ ...base(), wireImage, heatmaps: [{ label: 'Cardiomegaly', uri: 's3://bucket/review/1.2.3/v/heatmap-Cardiomegaly.png' }] })).not.toThrow();
  });

  it.each([
    ['no uri', { ...activationMaps, uri: undefined }],
    ['another format', { ...activationMaps, format: 'thorax.cam.v2' }],
    ['no labels', { ...activationMaps, labels: [] }],
    ['a repeated label', { ...activationMaps, labels: ['Mass', 'Mass'] }],
    ['a zero-sized map', { ...activationMaps, width: 0 }],
    ['a fractional size', { ...activationMaps, height: 7.5 }],
    ['a region without width', { ...activationMaps, region: { top: 16, left: 16, height: 224 } }],
    ['an unknown field', { ...activationMaps, png: 'x' }],
    ['null', null],
  ])('rejects %s', (_, value) => {
    expect(() => assertFindingsEvent({ ...base(), wireImage, activationMaps: value })).toThrow(/activationMaps/);
  });
});
