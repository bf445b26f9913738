import { ThoraxError } from '@thorax/contracts';
import sharp from 'sharp';
import { sniffMediaType } from './media-type';
import { DEFAULT_WIRE_OPTIONS, toWireImage } from './wire-image';

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
