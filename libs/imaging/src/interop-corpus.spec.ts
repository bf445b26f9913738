/**
 * Encodings other tools write (test/fixtures/imaging/interop, made by interop.py): each file
 * must show the same picture as its lossless twin, within the manifest's stated difference.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { decodeHtj2k, decodeJpeg2000, j2kTruncation } from './codecs';
import { parseDicomFile } from './dicom';
import { expandSegmentedLut } from './dicom-pixels';
import { DEFAULT_WIRE_OPTIONS, toWireImage, type WireImage } from './wire-image';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures/imaging');

interface Pair {
  file: string;
  twin: string;
  why: string;
  maxDiff: number;
  meanDiff: number;
}
const { pairs } = JSON.parse(readFileSync(path.join(FIXTURES, 'interop/manifest.json'), 'utf8')) as { pairs: Pair[] };

function wire(file: string): Promise<WireImage> {
  return toWireImage(readFileSync(path.join(FIXTURES, file)), DEFAULT_WIRE_OPTIONS);
}

function differences(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i += 1) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

describe('interoperability fixtures', () => {
  it('covers every decoding rule the corpus was made for', () => {
    expect(pairs.map((p) => path.basename(p.file)).sort()).toEqual([
      'htj2k-lossless.dcm',
      'jpeg-baseline-rgb-no-app14.dcm',
      'jpeg-ls-rgb-planar.dcm',
      'jpeg-ls-rgb-sample.dcm',
      'mono8-big-endian-ow.dcm',
      'palette-segmented.dcm',
      'ybr-full-422.dcm',
    ]);
  });

  it.each(pairs.map((p) => [p.why, p] as const))('%s shows the same picture as its twin', async (_why, pair) => {
    const [image, twin] = await Promise.all([wire(pair.file), wire(pair.twin)]);
    expect(image.source).toMatchObject({ width: twin.source.width, height: twin.source.height, voi: twin.source.voi });
    const { max, mean } = differences(image.pixels, twin.pixels);
    expect({ file: pair.file, max, mean, within: max <= pair.maxDiff && mean <= pair.meanDiff }).toMatchObject({ within: true });
    // The twin is a real picture, so equality is not two flat fields.
    expect(Math.max(...twin.pixels) - Math.min(...twin.pixels)).toBeGreaterThan(100);
  });

  it('reads the HTJ2K transfer syntax', () => {
    const parsed = parseDicomFile(readFileSync(path.join(FIXTURES, 'interop/htj2k-lossless.dcm')), { maxInflatedBytes: 1 << 20 }, {
      untilPixelData: false,
      stage: 'preprocess',
    });
    expect(parsed.info.transferSyntaxUid).toBe('1.2.840.10008.1.2.4.201');
  });
});

describe('HTJ2K codestreams that lie', () => {
  const file = readFileSync(path.join(FIXTURES, 'interop/htj2k-lossless.dcm'));
  const start = file.indexOf(Buffer.from([0xff, 0x4f, 0xff, 0x51]));
  const end = file.lastIndexOf(Buffer.from([0xff, 0xd9]));
  const stream = new Uint8Array(file.subarray(start, end + 2));
  const size = { width: 320, height: 384 };
  const limits = { maxPixels: 50_000_000 };

  it('decodes the intact stream', async () => {
    expect(await decodeHtj2k(stream, size, limits)).toMatchObject({ ...size, components: 1 });
  });

  it.each([
    ['is truncated', () => stream.subarray(0, stream.length >> 1), size, limits, 'CORRUPT_IMAGE'],
    ['ends at a tile-part boundary', () => Uint8Array.from([...stream.subarray(0, stream.length - 2)]), size, limits, 'CORRUPT_IMAGE'],
    ['has no SIZ marker', () => stream.subarray(8), size, limits, 'CORRUPT_IMAGE'],
    ['disagrees with Rows and Columns', () => stream, { width: 320, height: 383 }, limits, 'CORRUPT_IMAGE'],
    ['declares more pixels than allowed', () => stream, size, { maxPixels: 320 * 383 }, 'IMAGE_TOO_LARGE'],
  ] as const)('answers a stream that %s with its code', async (_what, bytes, expected, frameLimits, code) => {
    await expect(decodeHtj2k(bytes(), expected, frameLimits)).rejects.toMatchObject({ code });
  });
});

describe('JPEG 2000 codestreams cut short', () => {
  const file = readFileSync(path.join(FIXTURES, 'valid/j2k-lossless.dcm'));
  const start = file.indexOf(Buffer.from([0xff, 0x4f, 0xff, 0x51]));
  const stream = new Uint8Array(file.subarray(start, file.lastIndexOf(Buffer.from([0xff, 0xd9])) + 2));
  const size = { width: 320, height: 384 };

  it('finds nothing missing in a whole stream, with or without fragment padding', () => {
    expect(j2kTruncation(stream)).toBeNull();
    expect(j2kTruncation(Uint8Array.from([...stream, 0]))).toBeNull();
    expect(j2kTruncation(Uint8Array.from([...stream, 0xff]))).toBeNull();
    expect(j2kTruncation(Uint8Array.from([...stream, 0x12, 0x34]))).toBeNull();
  });

  it.each([
    ['half the stream', stream.length >> 1],
    ['all but EOC', stream.length - 2],
    ['the main header only', 200],
  ])('refuses %s as CORRUPT_IMAGE (OpenJPEG would return a black image)', async (_what, length) => {
    expect(j2kTruncation(stream.subarray(0, length))).not.toBeNull();
    await expect(decodeJpeg2000(stream.subarray(0, length), size, { maxPixels: 50_000_000 })).rejects.toMatchObject({ code: 'CORRUPT_IMAGE' });
  });
});

describe('segmented palette expansion (PS3.3 C.7.9.2)', () => {
  it('expands discrete, linear and indirect segments', () => {
    // discrete [10], linear 4 steps to 50, indirect: 1 segment at word 3 (the linear one, from 50 to 50), discrete [7]
    const words = Uint16Array.from([0, 1, 10, 1, 4, 50, 2, 1, 3, 0, 0, 1, 7]);
    expect(Array.from(expandSegmentedLut(words, 10))).toEqual([10, 20, 30, 40, 50, 50, 50, 50, 50, 7]);
  });

  it('rounds linear steps half to even', () => {
    // 0 → 5 in 2 steps: 2.5 → 2, 5
    expect(Array.from(expandSegmentedLut(Uint16Array.from([0, 1, 0, 1, 2, 5]), 3))).toEqual([0, 2, 5]);
  });

  it.each([
    ['a linear first segment', [1, 4, 50], 4],
    ['an unknown opcode', [0, 1, 1, 3, 1, 1], 2],
    ['more entries than the descriptor', [0, 3, 1, 2, 3], 2],
    ['fewer entries than the descriptor', [0, 2, 1, 2], 3],
    ['a discrete segment past the data', [0, 9, 1, 2], 9],
    ['an indirect offset past the data', [0, 1, 1, 2, 1, 500, 0], 2],
    ['an indirect segment pointing at itself', [0, 1, 1, 2, 1, 3, 0], 40],
  ])('refuses %s as CORRUPT_IMAGE', (_what, words, entries) => {
    expect(() => expandSegmentedLut(Uint16Array.from(words), entries)).toThrow(expect.objectContaining({ code: 'CORRUPT_IMAGE' }));
  });
});
