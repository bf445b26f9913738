import { BinaryWriter } from '@bufbuild/protobuf/wire';
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
});
