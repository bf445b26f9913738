/**
 * The generated fixture corpus (test/fixtures/imaging, scripts/fixtures-imaging.sh) through the
 * ingest checks and the preprocess decode, exactly as the services run them: every valid file
 * becomes a wire image, every hostile file ends in its declared code at its declared stage.
 */
import { ThoraxError } from '@thorax/contracts';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDicomFile } from './dicom';
import { DEFAULT_INTAKE_OPTIONS, inspectStudy } from './intake';
import { DEFAULT_WIRE_OPTIONS, toWireImage, type WireImage } from './wire-image';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures/imaging');

interface ValidEntry {
  file: string;
  name: string;
  voi: string;
  ts?: string;
  frames?: number;
}
interface HostileEntry {
  file: string;
  code: string;
  stage: string;
  why: string;
  headers?: Record<string, string>;
}
const manifest = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as { valid: ValidEntry[]; hostile: HostileEntry[] };

function read(file: string): Buffer {
  return readFileSync(path.join(FIXTURES, file));
}

async function pipeline(bytes: Buffer, headers: Record<string, string> = {}): Promise<WireImage> {
  inspectStudy(bytes, headers['content-type'], DEFAULT_INTAKE_OPTIONS);
  return toWireImage(bytes, DEFAULT_WIRE_OPTIONS);
}

async function outcome(bytes: Buffer, headers?: Record<string, string>): Promise<{ code: string; stage: string }> {
  try {
    await pipeline(bytes, headers);
    return { code: 'ok', stage: '' };
  } catch (error) {
    if (error instanceof ThoraxError) return { code: error.code, stage: error.options.stage ?? '?' };
    return { code: `unclassified ${(error as Error)?.message}`, stage: '?' };
  }
}

const wires = new Map<string, WireImage>();
async function wire(file: string): Promise<WireImage> {
  let w = wires.get(file);
  if (!w) {
    w = await pipeline(read(file));
    wires.set(file, w);
  }
  return w;
}

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i += 1) max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return max;
}

describe('fixture corpus', () => {
  it('has at least 30 hostile files and a valid file per supported transfer syntax', () => {
    expect(manifest.hostile.length).toBeGreaterThanOrEqual(30);
    const syntaxes = new Set(manifest.valid.map((v) => v.ts).filter(Boolean));
    for (const ts of ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.4.50',
      '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70', '1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81',
      '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.5']) {
      expect(syntaxes).toContain(ts);
    }
  });

  it.each(manifest.valid.map((v) => [v.name, v] as const))('decodes %s', async (_name, entry) => {
    const w = await wire(entry.file);
    expect(w.pixels).toHaveLength(256 * 256);
    expect(w.source.voi).toBe(entry.voi);
    expect(w.source.frames).toBe(entry.frames ?? 1);
    expect(w.source.frameIndex).toBe(0);
    // A real image, not a flat field: the synthetic chest spans most of the grey range.
    let lo = 255;
    let hi = 0;
    for (const v of w.pixels) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    expect(hi - lo).toBeGreaterThan(100);
  });

  it.each(manifest.hostile.map((h) => [h.file, h] as const))('refuses %s with its code', async (_file, entry) => {
    expect(await outcome(read(entry.file), entry.headers)).toEqual({ code: entry.code, stage: entry.stage });
  });

  it('decodes every lossless encoding of one image to the same wire bytes', async () => {
    const reference = await wire('valid/mono2-explicit-le-window.dcm');
    for (const file of ['mono2-deflated.dcm', 'mono2-big-endian.dcm', 'mono2-no-preamble.dcm', 'jpeg-lossless-sv1.dcm', 'jpeg-lossless-p14.dcm',
      'jpeg-ls-lossless.dcm', 'rle-mono2.dcm', 'j2k-lossless.dcm', 'mono2-multiframe.dcm', 'jpeg-ls-multiframe.dcm', 'mono2-no-view-no-body-part.dcm']) {
      expect({ file, diff: maxDiff((await wire(`valid/${file}`)).pixels, reference.pixels) }).toEqual({ file, diff: 0 });
    }
    expect(maxDiff((await wire('valid/rle-mono1.dcm')).pixels, (await wire('valid/mono1-explicit-le.dcm')).pixels)).toBe(0);
    expect(maxDiff((await wire('valid/jpeg-lossless-signed.dcm')).pixels, (await wire('valid/signed16-rescale-linear-exact.dcm')).pixels)).toBe(0);
    expect(maxDiff((await wire('valid/rle-rgb.dcm')).pixels, (await wire('valid/rgb-interleaved.dcm')).pixels)).toBe(0);
    expect(maxDiff((await wire('valid/rgb-planar.dcm')).pixels, (await wire('valid/rgb-interleaved.dcm')).pixels)).toBe(0);
    // Near-lossless JPEG-LS (error ≤ 2 stored levels of 4095) and lossy J2K stay close.
    expect(maxDiff((await wire('valid/jpeg-ls-near-lossless.dcm')).pixels, reference.pixels)).toBeLessThanOrEqual(2);
    const lossy = (await wire('valid/j2k-lossy.dcm')).pixels;
    let sum = 0;
    for (let i = 0; i < lossy.length; i += 1) sum += Math.abs((lossy[i] as number) - (reference.pixels[i] as number));
    expect(sum / lossy.length).toBeLessThan(6);
  });

  it('masks bits above Bits Stored (set here in every sample) and otherwise uses the samples as stored', async () => {
    const clean = read('valid/mono2-explicit-le-window.dcm');
    const parsed = parseDicomFile(clean, { maxInflatedBytes: DEFAULT_WIRE_OPTIONS.maxInflatedBytes }, { untilPixelData: false, stage: 'preprocess' });
    expect(parsed.info.bitsStored).toBeLessThan(16);
    const pixelData = parsed.dataSet.elements['x7fe00010'] as { dataOffset: number; length: number };
    const dirty = Buffer.from(clean);
    for (let i = pixelData.dataOffset + 1; i < pixelData.dataOffset + pixelData.length; i += 2) dirty[i] = (dirty[i] as number) | 0xf0;
    expect(dirty.equals(clean)).toBe(false);
    const [a, b] = await Promise.all([toWireImage(clean), toWireImage(dirty)]);
    expect(maxDiff(a.pixels, b.pixels)).toBe(0);
  });

  it('inverts MONOCHROME1 and applies EXIF orientation', async () => {
    // mono1 stores 4095 - v with the window mirrored (4096 - c): it shows the same picture.
    const mono2 = await wire('valid/mono2-explicit-le-window.dcm');
    const mono1 = await wire('valid/mono1-explicit-le.dcm');
    expect(maxDiff(mono1.pixels, mono2.pixels)).toBeLessThanOrEqual(1);
    const upright = await wire('valid/colour.jpg');
    const rotated = await wire('valid/exif-rotated.jpg');
    expect(rotated.source).toMatchObject({ width: upright.source.height, height: upright.source.width });
    // Orientation 6: the stored image is shown turned 90° clockwise.
    const turned = new Uint8Array(256 * 256);
    for (let y = 0; y < 256; y += 1) for (let x = 0; x < 256; x += 1) turned[y * 256 + x] = upright.pixels[(255 - x) * 256 + y] as number;
    // libvips resizes rows then columns of the oriented image at sub-pixel phases quantised per
    // axis, so a turned picture is not resampled bit for bit alike: within 2 levels, mean < 0.1.
    expect(maxDiff(turned, rotated.pixels)).toBeLessThanOrEqual(2);
    let sum = 0;
    for (let i = 0; i < turned.length; i += 1) sum += Math.abs((turned[i] as number) - (rotated.pixels[i] as number));
    expect(sum / turned.length).toBeLessThan(0.1);
  });
});
