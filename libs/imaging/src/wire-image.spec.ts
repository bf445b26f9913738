import { ThoraxError } from '@thorax/contracts';
import sharp from 'sharp';
import { sniffMediaType } from './media-type';
import { resizeGreyPlane, withWireResize } from './resize';
import { DEFAULT_WIRE_OPTIONS, pngHeader, toWireImage } from './wire-image';

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

describe('pngHeader', () => {
  const raw = (channels: 1 | 2 | 3 | 4) => {
    const data = Buffer.alloc(90 * 70 * channels);
    for (let i = 0; i < data.length; i += 1) data[i] = (i * 37) & 255;
    return sharp(data, { raw: { width: 90, height: 70, channels } });
  };

  it('reads what sharp reads from a plain PNG: size, sample depth, channels', async () => {
    const pngs = [
      await raw(1).toColourspace('b-w').png().toBuffer(),
      await raw(1).toColourspace('grey16').png().toBuffer(),
      await raw(2).toColourspace('b-w').png().toBuffer(),
      await raw(3).png().toBuffer(),
      await raw(4).png().toBuffer(),
      await raw(3).toColourspace('rgb16').png().toBuffer(),
    ];
    const seen = new Set<string>();
    for (const png of pngs) {
      const header = pngHeader(png);
      const meta = await sharp(png).metadata();
      expect(header).not.toBeNull();
      expect(header).toEqual({
        format: meta.format,
        width: meta.width,
        height: meta.height,
        autoOrient: meta.autoOrient,
        depth: meta.depth,
        channels: meta.channels,
      });
      seen.add(`${header?.depth}/${header?.channels}`);
    }
    expect([...seen].sort()).toEqual(['uchar/1', 'uchar/2', 'uchar/3', 'uchar/4', 'ushort/1', 'ushort/3']);
  });

  it('leaves palette, transparency-keyed, oriented, truncated and non-PNG input to sharp (null)', async () => {
    const grey = await raw(1).toColourspace('b-w').png().toBuffer();
    expect(pngHeader(grey)).toMatchObject({ channels: 1 });
    expect(pngHeader(await raw(3).png({ palette: true }).toBuffer())).toBeNull();
    expect(pngHeader(await raw(1).toColourspace('b-w').withExif({ IFD0: { Orientation: '6' } }).png().toBuffer())).toBeNull();
    // A tRNS chunk (grey level 0 transparent) inserted after IHDR: libvips adds an alpha channel.
    const trns = Buffer.from([0, 0, 0, 2, 0x74, 0x52, 0x4e, 0x53, 0, 0, 0, 0, 0, 0]);
    expect(pngHeader(Buffer.concat([grey.subarray(0, 33), trns, grey.subarray(33)]))).toBeNull();
    expect(pngHeader(grey.subarray(0, 40))).toBeNull();
    expect(pngHeader(await gradient(300, 300, 'jpeg'))).toBeNull();
    const zeroWidth = Buffer.from(grey);
    zeroWidth.writeUInt32BE(0, 16);
    expect(pngHeader(zeroWidth)).toBeNull();
  });

  it('gives the same wire image as the sharp-read header', async () => {
    const png = await gradient(512, 300, 'png');
    expect(pngHeader(png)).not.toBeNull();
    // The same bytes with an eXIf chunk of orientation 1 (upright) take the metadata() path.
    const tagged = await sharp(png).withExif({ IFD0: { Orientation: '1' } }).png().toBuffer();
    expect(pngHeader(tagged)).toBeNull();
    expect(Buffer.from((await toWireImage(tagged)).pixels)).toEqual(Buffer.from((await toWireImage(png)).pixels));
  });
});
