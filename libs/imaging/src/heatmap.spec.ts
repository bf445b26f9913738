import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { decodePngRaw, encodeGreyPng, HEATMAP_FLOOR, HEATMAP_LUT, HEATMAP_MAX_ALPHA, heatmapRgba, upsampleBilinear } from './heatmap';

const geometry = { height: 7, width: 7, region: { top: 16, left: 16, height: 224, width: 224 } };

/** 14 maps of 7x7, all flat except `label`, which peaks at cell (row, col). */
function maps(label: number, row: number, col: number): Float32Array {
  const all = new Float32Array(14 * 49).fill(-3);
  for (let i = 0; i < 49; i += 1) all[label * 49 + i] = -1 + 0.01 * i;
  all[label * 49 + row * 7 + col] = 5;
  return all;
}

function alphaPeak(rgba: Uint8Array, width: number): { x: number; y: number; alpha: number } {
  let best = { x: -1, y: -1, alpha: -1 };
  for (let i = 3; i < rgba.length; i += 4) {
    const alpha = rgba[i] as number;
    if (alpha > best.alpha) best = { x: ((i - 3) / 4) % width, y: Math.floor((i - 3) / 4 / width), alpha };
  }
  return best;
}

describe('heatmap', () => {
  it('upsamples with aligned pixel centres: cell values at their block centres, clamped edges', () => {
    const map = Float32Array.from([0, 1, 2, 3]); // 2x2
    const up = upsampleBilinear(map, 2, 2, 4, 4);
    // Pixel 0 and 1 lie left of the first cell centre (0.75 → clamped, 1.25 → 0.25 of the way).
    expect(Array.from(up.subarray(0, 4))).toEqual([0, 0.25, 0.75, 1]);
    expect(up[15]).toBe(3);
    expect(up[5]).toBeCloseTo(0.25 * 2 + 0.25 * 1, 6); // row 1, col 1: (0.25, 0.25) of the way
    expect(() => upsampleBilinear(map, 3, 3, 4, 4)).toThrow(/expected 3x3/);
  });

  it('puts the peak of a label on its strongest cell, in wire-image pixels, and leaves the rest transparent', () => {
    const rgba = heatmapRgba(maps(4, 2, 5), 4, geometry, 256, 256);
    const peak = alphaPeak(rgba, 256);
    // Cell (2, 5) of the 224 crop at offset 16 spans x 176..207, y 80..111; its centre is (192, 96).
    expect(peak.alpha).toBe(HEATMAP_MAX_ALPHA);
    expect(peak.x).toBeGreaterThanOrEqual(176);
    expect(peak.x).toBeLessThanOrEqual(207);
    expect(peak.y).toBeGreaterThanOrEqual(80);
    expect(peak.y).toBeLessThanOrEqual(111);
    // Red at the peak; nothing outside the region (the crop border of the wire image).
    expect(Array.from(rgba.subarray((96 * 256 + 192) * 4, (96 * 256 + 192) * 4 + 3))).toEqual([255, 0, 0]);
    for (const [x, y] of [[0, 0], [15, 100], [240, 240], [255, 17]] as const) expect(rgba[(y * 256 + x) * 4 + 3]).toBe(0);
  });

  it('normalises min-max within the map: the weakest cell is transparent, scale does not matter', () => {
    const a = heatmapRgba(maps(0, 3, 3), 0, geometry, 256, 256);
    const scaled = heatmapRgba(maps(0, 3, 3).map((v) => v * 100 + 7), 0, geometry, 256, 256);
    // The same picture within one step of the colour table (float rounding at a .5 boundary).
    expect(scaled.every((v, i) => Math.abs(v - (a[i] as number)) <= 4)).toBe(true);
    expect(alphaPeak(scaled, 256)).toEqual(alphaPeak(a, 256));
    // Cell (0, 0) holds the minimum: transparent there.
    expect(a[(24 * 256 + 24) * 4 + 3]).toBe(0);
    // A flat map has no location: fully transparent.
    expect(heatmapRgba(new Float32Array(14 * 49).fill(2), 3, geometry, 256, 256).every((v, i) => i % 4 !== 3 || v === 0)).toBe(true);
  });

  it('opacity grows with the value above the floor; refuses maps that do not fit', () => {
    const alphas = Array.from({ length: 256 }, (_, i) => HEATMAP_LUT[i * 4 + 3] as number);
    expect(alphas[Math.floor(255 * HEATMAP_FLOOR) - 1]).toBe(0);
    expect(alphas[255]).toBe(HEATMAP_MAX_ALPHA);
    expect(alphas.every((a, i) => i === 0 || a >= (alphas[i - 1] as number))).toBe(true);
    expect(() => heatmapRgba(new Float32Array(10), 0, geometry, 256, 256)).toThrow(/no map/);
    expect(() => heatmapRgba(maps(0, 1, 1), 0, { ...geometry, region: { top: 40, left: 16, height: 224, width: 224 } }, 256, 256)).toThrow(
      /outside/,
    );
    const nan = maps(0, 1, 1);
    nan[3] = Number.NaN;
    expect(() => heatmapRgba(nan, 0, geometry, 256, 256)).toThrow(/NaN/);
  });
});

describe('encodeGreyPng (uncompressed wire PNG)', () => {
  it.each([
    [256, 256],
    [3, 2],
    [1, 1],
    [300, 7],
  ])('writes a %ix%i PNG that decoders read back byte for byte as one 8-bit grey channel', async (width, height) => {
    const pixels = Uint8Array.from({ length: width * height }, (_, i) => (i * 37 + (i >> 5)) % 256);
    const png = encodeGreyPng(pixels, width, height);
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels, meta.depth, meta.isProgressive]).toEqual(['png', width, height, 1, 'uchar', false]);
    const back = await decodePngRaw(png);
    expect([back.width, back.height, back.channels]).toEqual([width, height, 1]);
    expect(back.data.equals(Buffer.from(pixels))).toBe(true);
    // Stored, not compressed: the pixels, a filter byte per row, and fixed overhead only.
    const overhead = png.length - width * height - height;
    expect(overhead).toBeGreaterThan(50);
    expect(overhead).toBeLessThan(80 + 5 * Math.ceil((width * height + height) / 65535));
  });

  it('splits rows over several stored blocks beyond 64 KiB, and zlib inflates them back', async () => {
    const pixels = Uint8Array.from({ length: 400 * 400 }, (_, i) => (i * 7) % 251);
    const png = encodeGreyPng(pixels, 400, 400);
    // The IDAT chunk follows the signature (8) and IHDR (25).
    const length = png.readUInt32BE(33);
    expect(png.toString('ascii', 37, 41)).toBe('IDAT');
    const rows = inflateSync(png.subarray(41, 41 + length));
    expect(rows.length).toBe(400 * 401);
    expect(rows.subarray(401 + 1, 401 + 1 + 400).equals(Buffer.from(pixels.subarray(400, 800)))).toBe(true);
    expect((await decodePngRaw(png)).data.equals(Buffer.from(pixels))).toBe(true);
  });

  it('refuses pixels that do not fill the size', () => {
    expect(() => encodeGreyPng(new Uint8Array(10), 4, 4)).toThrow(/10 pixels for 4x4/);
    expect(() => encodeGreyPng(new Uint8Array(0), 0, 0)).toThrow(/pixels for 0x0/);
  });
});
