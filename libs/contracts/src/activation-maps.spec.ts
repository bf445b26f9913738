import {
  ACTIVATION_MAPS_MAX_BYTES,
  type ActivationMaps,
  ActivationMapsInvalidError,
  decodeActivationMaps,
  encodeActivationMaps,
} from './activation-maps';
import { CHESTXRAY14_LABELS } from './labels';

function sample(): ActivationMaps {
  const labels = [...CHESTXRAY14_LABELS];
  const maps = new Float32Array(labels.length * 7 * 7);
  for (let i = 0; i < maps.length; i += 1) maps[i] = Math.sin(i * 0.37) * 3.25 - (i % 7) * 0.125;
  return {
    labels,
    height: 7,
    width: 7,
    image: { width: 256, height: 256 },
    region: { top: 16, left: 16, height: 224, width: 224 },
    units: 'logit',
    bias: labels.map((_, i) => -1.5 + i * 0.01),
    maps,
  };
}

describe('thorax.cam.v1 objects', () => {
  it('round-trips header and maps exactly, and lays the bytes out as documented', () => {
    const value = sample();
    const bytes = encodeActivationMaps(value);
    // Preamble: magic, version 1, reserved 0, header length; the maps start 4-aligned.
    expect(bytes.toString('ascii', 0, 4)).toBe('TXCM');
    expect(bytes.readUInt16LE(4)).toBe(1);
    expect(bytes.readUInt16LE(6)).toBe(0);
    const headerLength = bytes.readUInt32LE(8);
    expect((12 + headerLength) % 4).toBe(0);
    expect(bytes.length).toBe(12 + headerLength + 14 * 49 * 4);
    const header = JSON.parse(bytes.toString('utf8', 12, 12 + headerLength)) as Record<string, unknown>;
    expect(header).toEqual({
      format: 'thorax.cam.v1',
      labels: value.labels,
      height: 7,
      width: 7,
      image: { width: 256, height: 256 },
      region: { top: 16, left: 16, height: 224, width: 224 },
      units: 'logit',
      bias: value.bias,
    });
    // Label-major, row by row, little-endian float32: label 3, row 2, column 5.
    expect(bytes.readFloatLE(12 + headerLength + 4 * (3 * 49 + 2 * 7 + 5))).toBe(value.maps[3 * 49 + 2 * 7 + 5]);
    // The 14-label demo model's object: 2,744 bytes of maps and a header of a few hundred.
    expect(bytes.length).toBeLessThan(3_400);

    const decoded = decodeActivationMaps(bytes);
    expect(decoded).toEqual(value);
    // Deterministic: the same maps give the same bytes.
    expect(encodeActivationMaps(decoded).equals(bytes)).toBe(true);
  });

  it('reads an object from an unaligned buffer', () => {
    const bytes = encodeActivationMaps(sample());
    const shifted = Buffer.alloc(bytes.length + 1);
    bytes.copy(shifted, 1);
    expect(decodeActivationMaps(shifted.subarray(1)).maps).toEqual(sample().maps);
  });

  it('refuses to write maps that do not fit the header, or values that are not finite', () => {
    expect(() => encodeActivationMaps({ ...sample(), maps: new Float32Array(10) })).toThrow(ActivationMapsInvalidError);
    const nan = sample();
    nan.maps[17] = Number.NaN;
    expect(() => encodeActivationMaps(nan)).toThrow(/map value 17 is NaN/);
    expect(() => encodeActivationMaps({ ...sample(), region: { top: 16, left: 16, height: 241, width: 224 } })).toThrow(/outside the image/);
    expect(() => encodeActivationMaps({ ...sample(), bias: [0] })).toThrow(/bias/);
  });

  describe('refuses a damaged or foreign object', () => {
    const good = () => encodeActivationMaps(sample());
    const headerEnd = () => 12 + good().readUInt32LE(8);
    const withHeader = (edit: (h: Record<string, unknown>) => void) => {
      const bytes = good();
      const header = JSON.parse(bytes.toString('utf8', 12, headerEnd())) as Record<string, unknown>;
      edit(header);
      const text = Buffer.from(JSON.stringify(header));
      const length = text.length + ((4 - ((12 + text.length) % 4)) % 4);
      const out = Buffer.alloc(12 + length, 0x20);
      bytes.copy(out, 0, 0, 12);
      out.writeUInt32LE(length, 8);
      text.copy(out, 12);
      return Buffer.concat([out, bytes.subarray(headerEnd())]);
    };
    it.each<[string, () => Buffer, RegExp]>([
      ['empty', () => Buffer.alloc(0), /magic/],
      ['a PNG', () => Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]), /magic/],
      ['another version', () => { const b = good(); b.writeUInt16LE(2, 4); return b; }, /version 2/],
      ['a header past the end', () => { const b = good(); b.writeUInt32LE(1 << 20, 8); return b; }, /header length/],
      ['a header that is not JSON', () => { const b = good(); b.write('{', 13); return b; }, /not JSON/],
      ['a truncated body', () => good().subarray(0, good().length - 4), /map values/],
      ['a torn float', () => good().subarray(0, good().length - 1), /whole number/],
      ['another format', () => withHeader((h) => { h['format'] = 'thorax.cam.v9'; }), /format/],
      ['duplicate labels', () => withHeader((h) => { (h['labels'] as string[])[1] = 'Atelectasis'; }), /distinct/],
      ['a region outside the image', () => withHeader((h) => { h['region'] = { top: 0, left: 0, height: 300, width: 10 }; }), /outside/],
      ['other units', () => withHeader((h) => { h['units'] = 'probability'; }), /units/],
      ['an infinite value', () => { const b = good(); b.writeFloatLE(Number.POSITIVE_INFINITY, headerEnd() + 8); return b; }, /map value 2 is Infinity/],
      ['more than the largest object', () => Buffer.alloc(ACTIVATION_MAPS_MAX_BYTES + 1), /more than/],
    ])('%s', (_, bytes, message) => {
      expect(() => decodeActivationMaps(bytes())).toThrow(ActivationMapsInvalidError);
      expect(() => decodeActivationMaps(bytes())).toThrow(message);
    });
  });
});
