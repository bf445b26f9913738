import { ThoraxError } from '@thorax/contracts';
import sharp from 'sharp';
import { sniffMediaType } from './media-type';
import { resizeGreyPlane, withWireResize } from './resize';
import { DEFAULT_WIRE_OPTIONS, toWireImage } from './wire-image';

/** A grey picture with detail at every scale (a DCT-domain shrink would change it). */
function texture(width: number, height: number): Buffer {
  const raw = Buffer.alloc(width * height);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) raw[y * width + x] = (((x * 7) ^ (y * 13)) & 255) / 2 + ((x + y) % 64);
  }
  return raw;
}

async function gradient(width: number, height: number, format: 'png' | 'jpeg'): Promise<Buffer> {
  const raw = Buffer.alloc(width * height);
  for (let y = 0; y < height; y += 1) for (let x = 0; x < width; x += 1) raw[y * width + x] = Math.round((x / (width - 1)) * 255);
  const img = sharp(raw, { raw: { width, height, channels: 1 } });
  return format === 'png' ? img.png().toBuffer() : img.jpeg({ quality: 95 }).toBuffer();
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return error instanceof ThoraxError ? error.code : `unclassified: ${(error as Error).message}`;
  }
}

describe('toWireImage', () => {
  it('resizes the shorter side to 256 and centre-crops a landscape PNG', async () => {
    const png = await gradient(512, 300, 'png');
    expect(sniffMediaType(png)).toBe('image/png');
    const wire = await toWireImage(png);
    expect(wire.width).toBe(256);
    expect(wire.height).toBe(256);
    expect(wire.pixels.length).toBe(256 * 256);
    expect(wire.source).toMatchObject({ width: 512, height: 300, format: 'png' });
    // The crop keeps the centre of the horizontal ramp: values span roughly 0.21..0.79 of 255.
    const row = wire.pixels.subarray(128 * 256, 129 * 256);
    expect(row[0]).toBeGreaterThan(40);
    expect(row[0]).toBeLessThan(70);
    expect(row[255]).toBeGreaterThan(185);
    expect(row[255]).toBeLessThan(215);
  });

  it('8-bit grey JPEG: resized from the full decode (no DCT shrink-on-load), one grey channel', async () => {
    // 2048 x 1600 → 328 x 256 is a factor of 6.25: sharp would reload this JPEG at 1/2 scale
    // through libjpeg unless the wire pipeline keeps it from doing so.
    const raw = texture(2048, 1600);
    const jpeg = await sharp(raw, { raw: { width: 2048, height: 1600, channels: 1 } }).toColourspace('b-w').jpeg({ quality: 90 }).toBuffer();
    const decoded = await sharp(jpeg).toColourspace('b-w').raw().toBuffer();
    expect(decoded.length).toBe(2048 * 1600);
    const reference = await withWireResize(sharp(decoded, { raw: { width: 2048, height: 1600, channels: 1 } }), 2048, 1600, 256)
      .toColourspace('b-w')
      .raw()
      .toBuffer();
    const wire = await toWireImage(jpeg);
    expect(wire.source).toMatchObject({ width: 2048, height: 1600, channels: 1, voi: 'as-stored' });
    expect(Buffer.from(wire.pixels).equals(reference)).toBe(true);
  });

  it('float planes are rounded once, at the end: floor(v + 0.5) clamped to 0..255', async () => {
    // A flat plane stays flat through Lanczos-3: the rounding alone decides each value.
    const cases: [number, number][] = [[-7.25, 0], [0.49, 0], [0.5, 1], [127.499, 127], [127.5, 128], [254.5, 255], [300, 255]];
    for (const [value, expected] of cases) {
      const wire = await resizeGreyPlane(new Float32Array(400 * 300).fill(value), 400, 300, 256, 10);
      expect({ value, levels: [...new Set(wire)] }).toEqual({ value, levels: [expected] });
    }
  });

  it('decodes RGB JPEG to one grey channel', async () => {
    const rgb = await sharp({ create: { width: 300, height: 300, channels: 3, background: { r: 200, g: 100, b: 50 } } })
      .jpeg()
      .toBuffer();
    expect(sniffMediaType(rgb)).toBe('image/jpeg');
    const wire = await toWireImage(rgb);
    expect(wire.pixels.length).toBe(256 * 256);
    expect(new Set(wire.pixels).size).toBeLessThan(4);
  });

  it('classifies bad input with codes', async () => {
    const png = await gradient(300, 300, 'png');
    expect(await codeOf(toWireImage(png.subarray(0, png.length / 2)))).toBe('CORRUPT_IMAGE');
    expect(await codeOf(toWireImage(Buffer.from('not an image at all')))).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect(await codeOf(toWireImage(await gradient(40, 300, 'png')))).toBe('IMAGE_TOO_SMALL');
    expect(
      await codeOf(toWireImage(png, { ...DEFAULT_WIRE_OPTIONS, maxInputPixels: 1000, minInputSide: 8 })),
    ).toBe('IMAGE_TOO_LARGE');
    const gif = await sharp({ create: { width: 100, height: 100, channels: 3, background: '#fff' } }).gif().toBuffer();
    expect(sniffMediaType(gif)).toBeNull();
    expect(await codeOf(toWireImage(gif))).toBe('UNSUPPORTED_MEDIA_TYPE');
  });
});
