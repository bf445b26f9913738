import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { loadModelArtifact } from './model-directory';
import { ModelContractError, parseModelMetadata, readOnnxMetadataProps } from './onnx-metadata';

/** A ModelProto with ir_version, producer_name, a dummy graph and metadata_props. */
function modelProto(props: Record<string, string>): Uint8Array {
  const w = new BinaryWriter();
  w.uint32((1 << 3) | 0).int64(9); // ir_version
  w.uint32((2 << 3) | 2).string('thorax-trainer'); // producer_name
  w.uint32((7 << 3) | 2).bytes(new Uint8Array([0x0a, 0x02, 0x6e, 0x6e])); // graph (skipped)
  for (const [key, value] of Object.entries(props)) {
    const entry = new BinaryWriter()
      .uint32((1 << 3) | 2)
      .string(key)
      .uint32((2 << 3) | 2)
      .string(value)
      .finish();
    w.uint32((14 << 3) | 2).bytes(entry);
  }
  return w.finish();
}

const labels = ['Atelectasis', 'Cardiomegaly'];
const valid = {
  'thorax.schema': 'thorax.model.v1',
  'thorax.model.name': 'm',
  'thorax.model.version': '1',
  'thorax.labels': JSON.stringify(labels),
  'thorax.thresholds': JSON.stringify([0.3, 0.6]),
  'thorax.input': JSON.stringify({
    name: 'image',
    dtype: 'uint8',
    layout: 'NCHW',
    channels: 1,
    height: 256,
    width: 256,
    pixelFormat: 'grey8',
  }),
  'thorax.output': JSON.stringify({ name: 'probabilities', activation: 'sigmoid' }),
};

describe('ONNX metadata', () => {
  it('reads metadata_props without loading the graph', () => {
    const { producerName, props } = readOnnxMetadataProps(modelProto(valid));
    expect(producerName).toBe('thorax-trainer');
    expect(props).toEqual(valid);
    const meta = parseModelMetadata(props);
    expect(meta.labels).toEqual(labels);
    expect(meta.thresholds).toEqual([0.3, 0.6]);
    expect(meta.input.width).toBe(256);
  });

  it('names what is wrong with a model that breaks the contract', () => {
    expect(() => parseModelMetadata({ ...valid, 'thorax.thresholds': '[0.5]' })).toThrow(/differ in length/);
    expect(() => parseModelMetadata({ ...valid, 'thorax.labels': 'not json' })).toThrow(ModelContractError);
    expect(() =>
      parseModelMetadata({ ...valid, 'thorax.input': JSON.stringify({ name: 'x', dtype: 'float32' }) }),
    ).toThrow(/thorax\.input/);
    const { 'thorax.schema': _schema, ...missing } = valid;
    expect(() => parseModelMetadata(missing)).toThrow(/thorax\.schema/);
  });

  it('reads the class activation maps spec when present (older files have none) and checks it', () => {
    expect(parseModelMetadata(valid).cam).toBeNull();
    const cam = {
      name: 'cam',
      dtype: 'float32',
      shape: ['batch', 2, 7, 7],
      units: 'logit',
      bias: [0.1, -0.2],
      region: { top: 16, left: 16, height: 224, width: 224 },
    };
    expect(parseModelMetadata({ ...valid, 'thorax.outputs.cam': JSON.stringify(cam) }).cam).toMatchObject({ bias: [0.1, -0.2] });
    const broken = (change: object) => () =>
      parseModelMetadata({ ...valid, 'thorax.outputs.cam': JSON.stringify({ ...cam, ...change }) });
    expect(broken({ bias: [0.1] })).toThrow(/one entry per label/);
    expect(broken({ shape: ['batch', 3, 7, 7] })).toThrow(/one entry per label/);
    expect(broken({ region: { top: 40, left: 16, height: 224, width: 224 } })).toThrow(/inside the input/);
    expect(broken({ name: 'probabilities' })).toThrow(/other than the probabilities/);
    expect(broken({ units: 'probability' })).toThrow(/thorax\.outputs\.cam/);
  });

  describe('training provenance', () => {
    const training = (dataset: Record<string, unknown>) => JSON.stringify({ dataset, epochs: 1 });

    it('derives the data source from the dataset the trainer recorded', () => {
      const cases: [Record<string, string>, string, string | null][] = [
        [{ 'thorax.training': training({ name: 'thorax-synthetic-cxr', kind: 'synthetic' }) }, 'synthetic', 'thorax-synthetic-cxr'],
        [{ 'thorax.training': training({ name: 'images', kind: 'nih-layout' }) }, 'nih-chestxray14', 'images'],
        [{ 'thorax.training': training({ name: 'NIH ChestX-ray14' }) }, 'nih-chestxray14', 'NIH ChestX-ray14'],
        [{ 'thorax.training': training({ name: 'St. Elsewhere CXR 2025', kind: 'custom' }) }, 'st.-elsewhere-cxr-2025', 'St. Elsewhere CXR 2025'],
        [{ 'thorax.training': JSON.stringify({ epochs: 3 }) }, 'unknown', null],
        [{}, 'unknown', null],
      ];
      for (const [props, data, dataset] of cases) {
        const { provenance } = parseModelMetadata({ ...valid, ...props });
        expect({ data: provenance.data, dataset: provenance.dataset, clinical: provenance.clinical }).toEqual({ data, dataset, clinical: false });
      }
    });

    it('thorax.training.data overrides the derivation; clinical only when declared and not synthetic', () => {
      const synthetic = training({ name: 's', kind: 'synthetic' });
      const hospital = parseModelMetadata({ ...valid, 'thorax.training': synthetic, 'thorax.training.data': 'hospital-a-2025', 'thorax.training.clinical': 'true' });
      expect(hospital.provenance).toEqual({
        data: 'hospital-a-2025',
        clinical: true,
        dataset: 's',
        note: 'Model trained on hospital-a-2025 data and declared clinically validated by its publisher.',
      });
      const stillSynthetic = parseModelMetadata({ ...valid, 'thorax.training': synthetic, 'thorax.training.clinical': 'true' });
      expect(stillSynthetic.provenance).toMatchObject({ data: 'synthetic', clinical: false });
      expect(stillSynthetic.provenance.note).toBe('Demonstration model trained on synthetic images; not for clinical use.');
      expect(() => parseModelMetadata({ ...valid, 'thorax.training.data': 'Not A Slug' })).toThrow(/thorax\.training\.data/);
      expect(() => parseModelMetadata({ ...valid, 'thorax.training.clinical': 'yes' })).toThrow(/thorax\.training\.clinical/);
    });

    it('the committed model reads as a synthetic, non-clinical demonstration model', async () => {
      const dir = path.resolve(__dirname, '../../../models/thorax-tiny-cnn');
      const artifact = await loadModelArtifact(dir);
      expect(artifact.metadata.provenance).toEqual({
        data: 'synthetic',
        clinical: false,
        dataset: 'thorax-synthetic-cxr',
        note: 'Demonstration model trained on synthetic images; not for clinical use.',
      });
      // The human copy next to it says the same.
      const version = path.basename(path.dirname(artifact.path));
      const human = JSON.parse(readFileSync(path.join(dir, version, 'model.json'), 'utf8')) as {
        metadata: Record<string, { dataset?: { kind?: string } }>;
      };
      expect(human.metadata['thorax.training']?.dataset?.kind).toBe('synthetic');
    });
  });
});
