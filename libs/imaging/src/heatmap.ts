/**
 * Class activation map → heatmap pixels (pure; no I/O). A label's map (h×w cells, logit units,
 * covering `region` of the wire image) is upsampled bilinearly to the region's pixels, normalised
 * min-max within the upsampled map (0: where the label's evidence is weakest, 1: where it is
 * strongest) and coloured: a
 * blue→cyan→green→yellow→red scale whose opacity grows with the value, fully transparent below
 * HEATMAP_FLOOR and outside the region. The heatmap shows where the model's evidence for the label
 * lies in this image, not how strong it is: the probability says that.
 */
import { crc32 } from 'node:zlib';
import sharp from 'sharp';

export interface MapGeometry {
  /** Map cells. */
  height: number;
  width: number;
  /** The pixels of the wire image the map covers. */
  region: { top: number; left: number; height: number; width: number };
}

/**
 * Version of the rendering below (upsampling, normalisation, colour scale, opacity, PNG settings).
 * Part of the entity tag of a heatmap rendered on request: raise it with any change that alters
 * the pixels, so that browsers fetch the new rendering instead of revalidating the old one.
 */
export const HEATMAP_RENDER_VERSION = 1;

/** Normalised values below this are left transparent (low evidence would only veil the image). */
export const HEATMAP_FLOOR = 0.2;
/** Opacity at the map's maximum, 0..255 (the image under it stays readable). */
export const HEATMAP_MAX_ALPHA = 200;

/** Colour scale control points (value, r, g, b): blue, cyan, green, yellow, red. */
const SCALE: readonly (readonly [number, number, number, number])[] = [
  [0, 0, 0, 255],
  [0.25, 0, 200, 255],
  [0.5, 0, 220, 60],
  [0.75, 255, 220, 0],
  [1, 255, 0, 0],
];

/** 256-entry RGBA lookup table: index = round(255 * normalised value). */
export const HEATMAP_LUT: Uint8Array = buildLut();

function buildLut(): Uint8Array {
  const lut = new Uint8Array(256 * 4);
  for (let i = 0; i < 256; i += 1) {
    const v = i / 255;
    let k = 1;
    while (k < SCALE.length - 1 && (SCALE[k]?.[0] ?? 1) < v) k += 1;
    const [v0, r0, g0, b0] = SCALE[k - 1] ?? [0, 0, 0, 0];
    const [v1, r1, g1, b1] = SCALE[k] ?? [1, 0, 0, 0];
    const t = v1 > v0 ? (v - v0) / (v1 - v0) : 0;
    lut[i * 4] = Math.round(r0 + t * (r1 - r0));
    lut[i * 4 + 1] = Math.round(g0 + t * (g1 - g0));
    lut[i * 4 + 2] = Math.round(b0 + t * (b1 - b0));
    lut[i * 4 + 3] = v < HEATMAP_FLOOR ? 0 : Math.round((HEATMAP_MAX_ALPHA * (v - HEATMAP_FLOOR)) / (1 - HEATMAP_FLOOR));
  }
  return lut;
}

/**
 * Bilinear upsampling of one h×w map to outHeight×outWidth with pixel centres aligned (the
 * convention of PyTorch's `align_corners=False` and of libvips): cell (i, j) is centred on the
 * middle of the block of output pixels it stands for; edges are clamped.
 */
export function upsampleBilinear(
  map: Float32Array,
  height: number,
  width: number,
  outHeight: number,
  outWidth: number,
): Float32Array {
  if (map.length !== height * width) throw new Error(`map has ${map.length} cells, expected ${height}x${width}`);
  // Separable: along x for each map row, then along y (the same result, far fewer operations).
  const xs = axis(width, outWidth);
  const ys = axis(height, outHeight);
  const rows = new Float32Array(height * outWidth);
  for (let r = 0; r < height; r += 1) {
    for (let x = 0; x < outWidth; x += 1) {
      const { lo, hi, t } = xs[x] as Tap;
      rows[r * outWidth + x] = (map[r * width + lo] as number) * (1 - t) + (map[r * width + hi] as number) * t;
    }
  }
  const out = new Float32Array(outHeight * outWidth);
  for (let y = 0; y < outHeight; y += 1) {
    const { lo, hi, t } = ys[y] as Tap;
    const a = lo * outWidth;
    const b = hi * outWidth;
    const o = y * outWidth;
    for (let x = 0; x < outWidth; x += 1) out[o + x] = (rows[a + x] as number) * (1 - t) + (rows[b + x] as number) * t;
  }
  return out;
}

interface Tap {
  lo: number;
  hi: number;
  t: number;
}

function axis(cells: number, pixels: number): Tap[] {
  return Array.from({ length: pixels }, (_, p) => {
    const s = Math.min(Math.max(((p + 0.5) * cells) / pixels - 0.5, 0), cells - 1);
    const lo = Math.floor(s);
    return { lo, hi: Math.min(lo + 1, cells - 1), t: s - lo };
  });
}

/**
 * The heatmap of map `label` (label-major maps, `labels`×h×w) as RGBA pixels of the whole wire
 * image (`imageWidth`×`imageHeight`, transparent outside the region).
 */
export function heatmapRgba(
  maps: Float32Array,
  label: number,
  geometry: MapGeometry,
  imageWidth: number,
  imageHeight: number,
): Uint8Array {
  const { height, width, region } = geometry;
  const cells = height * width;
  if (region.top + region.height > imageHeight || region.left + region.width > imageWidth)
    throw new Error('map region lies outside the image');
  const map = maps.subarray(label * cells, (label + 1) * cells);
  if (map.length !== cells) throw new Error(`no map for label index ${label}`);
  for (const v of map) if (!Number.isFinite(v)) throw new Error(`map of label index ${label} holds ${v}`);
  const up = upsampleBilinear(map, height, width, region.height, region.width);
  let min = Infinity;
  let max = -Infinity;
  for (const v of up) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const range = max - min;
  const rgba = new Uint8Array(imageWidth * imageHeight * 4);
  // A flat map carries no location: it stays transparent.
  if (range <= 0) return rgba;
  const scale = 255 / range;
  for (let y = 0; y < region.height; y += 1) {
    let o = ((region.top + y) * imageWidth + region.left) * 4;
    const row = y * region.width;
    for (let x = 0; x < region.width; x += 1, o += 4) {
      const i = Math.round(((up[row + x] as number) - min) * scale) * 4;
      rgba[o] = HEATMAP_LUT[i] as number;
      rgba[o + 1] = HEATMAP_LUT[i + 1] as number;
      rgba[o + 2] = HEATMAP_LUT[i + 2] as number;
      rgba[o + 3] = HEATMAP_LUT[i + 3] as number;
    }
  }
  return rgba;
}

const PNG_OPTIONS = { compressionLevel: 6, adaptiveFiltering: false } as const;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const PNG_IEND = Buffer.from([0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);
const ADLER_MOD = 65521;
const ZERO = new Uint8Array(1);

/**
 * Encodes grey8 pixels (width×height) as an uncompressed PNG: one 8-bit grey channel, every row
 * with filter 0, the zlib stream (RFC 1950) in stored deflate blocks (RFC 1951, BTYPE 00), written
 * into one buffer. The file is the pixels plus about 0.1 % (65,865 bytes for 256²) and takes about
 * 0.2 ms of CPU on the calling thread, where zlib compression (sharp, level 6) took about 2.2 ms for
 * a third fewer bytes: the wire image is written for every image and read only when someone
 * reviews it (docs/inference.md).
 */
export function encodeGreyPng(pixels: Uint8Array, width: number, height: number): Buffer {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || pixels.length !== width * height)
    throw new Error(`${pixels.length} pixels for ${width}x${height}`);
  const raw = height * (width + 1); // each row: filter byte 0, then its pixels
  const blocks = Math.max(1, Math.ceil(raw / 65535));
  const zlibLength = 2 + raw + 5 * blocks + 4;
  const out = Buffer.allocUnsafe(PNG_SIGNATURE.length + 25 + 12 + zlibLength + PNG_IEND.length);
  PNG_SIGNATURE.copy(out, 0);
  let o = PNG_SIGNATURE.length;
  // IHDR: 8-bit, greyscale, deflate, adaptive filtering (each row: none), no interlace.
  out.writeUInt32BE(13, o);
  out.write('IHDR', o + 4, 'ascii');
  out.writeUInt32BE(width, o + 8);
  out.writeUInt32BE(height, o + 12);
  out.set([8, 0, 0, 0, 0], o + 16);
  out.writeUInt32BE(crc32(out.subarray(o + 4, o + 21)), o + 21);
  o += 25;
  const idat = o;
  out.writeUInt32BE(zlibLength, o);
  out.write('IDAT', o + 4, 'ascii');
  out[o + 8] = 0x78; // deflate, 32 KiB window
  out[o + 9] = 0x01; // fastest level; 0x7801 is a multiple of 31 (the header check)
  o += 10;
  let remaining = raw;
  let blockLeft = 0;
  const put = (bytes: Uint8Array) => {
    for (let s = 0; s < bytes.length; ) {
      if (blockLeft === 0) {
        blockLeft = Math.min(65535, remaining);
        out[o] = blockLeft === remaining ? 1 : 0; // BFINAL on the last block
        out.writeUInt16LE(blockLeft, o + 1);
        out.writeUInt16LE(~blockLeft & 0xffff, o + 3);
        o += 5;
      }
      const n = Math.min(blockLeft, bytes.length - s);
      out.set(bytes.subarray(s, s + n), o);
      o += n;
      s += n;
      blockLeft -= n;
      remaining -= n;
    }
  };
  // Adler-32 of the scanlines; sums stay exact (doubles) between reductions every 5,552 bytes (zlib's NMAX).
  let a = 1;
  let b = 0;
  let run = 0;
  for (let y = 0; y < height; y += 1) {
    const row = pixels.subarray(y * width, (y + 1) * width);
    put(ZERO);
    put(row);
    b += a;
    for (let x = 0; x < width; x += 1) {
      a += row[x] as number;
      b += a;
      if (++run === 5552) {
        a %= ADLER_MOD;
        b %= ADLER_MOD;
        run = 0;
      }
    }
  }
  out.writeUInt32BE((((b % ADLER_MOD) << 16) | (a % ADLER_MOD)) >>> 0, o);
  o += 4;
  out.writeUInt32BE(crc32(out.subarray(idat + 4, o)), o);
  o += 4;
  PNG_IEND.copy(out, o);
  return out;
}

/** Encodes RGBA pixels (width×height, e.g. from heatmapRgba) as a PNG, on libvips' threads. */
export function encodeRgbaPng(rgba: Uint8Array, width: number, height: number): Promise<Buffer> {
  // zlib level 3: 1.6x faster than 6 on a 256² heatmap for ~10 % more bytes (28 vs 26 kB).
  return sharp(rgba, { raw: { width, height, channels: 4 } }).png({ ...PNG_OPTIONS, compressionLevel: 3 }).toBuffer();
}

/** Decodes a PNG to its own channels (1: grey, 3: RGB, 4: RGBA), 8-bit; for checks and tools. */
export async function decodePngRaw(png: Buffer): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const meta = await sharp(png).metadata();
  const image = meta.channels === 1 ? sharp(png).toColourspace('b-w') : sharp(png);
  const { data, info } = await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}
