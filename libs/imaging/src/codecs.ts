import { ThoraxError } from '@thorax/contracts';
import { Decoder as LosslessDecoder } from 'jpeg-lossless-decoder-js';
import sharp from 'sharp';

/**
 * Decoders for encapsulated DICOM frames. JPEG baseline/extended (8-bit) goes through sharp
 * (libjpeg-turbo, the same library the trainer's Pillow uses); JPEG lossless through
 * jpeg-lossless-decoder-js; JPEG-LS, JPEG 2000 and HTJ2K through the Cornerstone WASM builds of
 * CharLS, OpenJPEG and OpenJPH, loaded from node_modules (no network). RLE is PS3.5 Annex G
 * PackBits, decoded here with bounds on every read and write.
 */

export interface FrameLimits {
  maxPixels: number;
}

export interface CodecFrame {
  width: number;
  height: number;
  components: number;
  /** Interleaved samples; 16-bit codecs give 16-bit arrays. */
  samples: Uint8Array | Uint16Array | Int16Array;
}

const stage = 'preprocess' as const;

function corrupt(message: string): ThoraxError {
  return new ThoraxError('CORRUPT_IMAGE', message, { stage });
}

export interface JpegFrameHeader {
  marker: number;
  precision: number;
  height: number;
  width: number;
  components: number;
}

/**
 * Reads the frame header (SOF0..SOF15 or JPEG-LS SOF55) of a JPEG-family stream without decoding
 * it, so that dimensions can be checked before any decoder allocates for them.
 */
export function jpegFrameHeader(bytes: Uint8Array): JpegFrameHeader | null {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return null;
  let p = 2;
  while (p + 4 <= bytes.length) {
    if (bytes[p] !== 0xff) return null;
    const marker = bytes[p + 1] as number;
    if (marker === 0xff) {
      p += 1;
      continue;
    }
    const length = ((bytes[p + 2] as number) << 8) | (bytes[p + 3] as number);
    const isSof = (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) || marker === 0xf7;
    if (isSof) {
      if (p + 10 > bytes.length) return null;
      return {
        marker,
        precision: bytes[p + 4] as number,
        height: ((bytes[p + 5] as number) << 8) | (bytes[p + 6] as number),
        width: ((bytes[p + 7] as number) << 8) | (bytes[p + 8] as number),
        components: bytes[p + 9] as number,
      };
    }
    if (marker === 0xda || length < 2) return null;
    p += 2 + length;
  }
  return null;
}

function checkHeader(header: JpegFrameHeader | null, expected: { width: number; height: number }, limits: FrameLimits, what: string) {
  if (!header) throw corrupt(`${what} stream has no readable frame header`);
  if (header.width * header.height > limits.maxPixels) {
    throw new ThoraxError('IMAGE_TOO_LARGE', `${what} frame declares ${header.width}x${header.height}`, { stage });
  }
  if (header.width !== expected.width || header.height !== expected.height) {
    throw corrupt(`${what} frame is ${header.width}x${header.height} but the DICOM header says ${expected.width}x${expected.height}`);
  }
  return header;
}

/** Whether a JPEG stream carries a JFIF (APP0) or Adobe (APP14) marker before its first scan. */
export function jpegColourMarkers(bytes: Uint8Array): { jfif: boolean; adobe: boolean } {
  const found = { jfif: false, adobe: false };
  let p = 2;
  while (p + 4 <= bytes.length && bytes[p] === 0xff) {
    const marker = bytes[p + 1] as number;
    if (marker === 0xff) {
      p += 1;
      continue;
    }
    if (marker === 0xda) break;
    const length = ((bytes[p + 2] as number) << 8) | (bytes[p + 3] as number);
    if (length < 2) break;
    const id = String.fromCharCode(...bytes.subarray(p + 4, Math.min(p + 9, bytes.length)));
    if (marker === 0xe0 && id.startsWith('JFIF')) found.jfif = true;
    if (marker === 0xee && id === 'Adobe') found.adobe = true;
    p += 2 + length;
  }
  return found;
}

/**
 * A three-component stream without a JFIF or Adobe marker leaves libjpeg to guess its colour
 * space from the component ids (1, 2, 3 reads as YCbCr). DICOM (PS3.5 8.2.1) says the
 * Photometric Interpretation decides: an Adobe APP14 marker stating it is inserted after SOI
 * (transform 0 = RGB, no conversion; 1 = YCbCr), which is what libjpeg obeys.
 */
function withColourTransform(bytes: Uint8Array, photometric: string): Uint8Array {
  const markers = jpegColourMarkers(bytes);
  if (markers.jfif || markers.adobe) return bytes;
  const transform = photometric === 'RGB' ? 0 : 1;
  const app14 = [0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, transform];
  const out = new Uint8Array(bytes.length + app14.length);
  out.set(bytes.subarray(0, 2), 0);
  out.set(app14, 2);
  out.set(bytes.subarray(2), 2 + app14.length);
  return out;
}

/**
 * JPEG baseline/extended through sharp: 8-bit samples only. `photometric` is the DICOM
 * Photometric Interpretation; it decides the colour transform of a three-component stream
 * that does not state its own.
 */
export async function decodeJpeg(
  bytes: Uint8Array,
  expected: { width: number; height: number },
  limits: FrameLimits & { timeoutSeconds: number },
  photometric = '',
): Promise<CodecFrame> {
  const header = checkHeader(jpegFrameHeader(bytes), expected, limits, 'JPEG');
  if (header.precision !== 8) {
    // No decoder for 12-bit lossy JPEG (process 4) is available offline: docs/imaging.md.
    throw new ThoraxError('UNSUPPORTED_TRANSFER_SYNTAX', `JPEG with ${header.precision}-bit samples (only 8-bit lossy JPEG is decoded)`, {
      stage,
    });
  }
  if (header.components === 3 && photometric) bytes = withColourTransform(bytes, photometric);
  try {
    const image = sharp(bytes, { failOn: 'warning', limitInputPixels: limits.maxPixels, autoOrient: false }).timeout({
      seconds: limits.timeoutSeconds,
    });
    // A one-component JPEG stays one channel (no round trip through sRGB).
    const { data, info } = await (header.components === 1 ? image.pipelineColourspace('b-w').toColourspace('b-w') : image)
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { width: info.width, height: info.height, components: info.channels, samples: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (error) {
    throw corrupt(`JPEG frame could not be decoded: ${(error as Error).message}`);
  }
}

/** JPEG lossless (processes 14 and 14 SV1). */
export function decodeJpegLossless(bytes: Uint8Array, expected: { width: number; height: number }, limits: FrameLimits): CodecFrame {
  const header = checkHeader(jpegFrameHeader(bytes), expected, limits, 'JPEG lossless');
  if (header.marker !== 0xc3 && header.marker !== 0xc7) throw corrupt(`JPEG lossless frame has SOF marker 0xff${header.marker.toString(16)}`);
  if (header.precision < 2 || header.precision > 16 || (header.components !== 1 && header.components !== 3)) {
    throw corrupt(`JPEG lossless frame with ${header.precision}-bit precision and ${header.components} components`);
  }
  let decoded: Uint8Array | Uint16Array;
  try {
    const copy = new Uint8Array(bytes);
    decoded = new LosslessDecoder().decode(copy.buffer, 0, copy.byteLength, header.precision > 8 ? 2 : 1) as Uint8Array | Uint16Array;
  } catch (error) {
    throw corrupt(`JPEG lossless frame could not be decoded: ${String((error as Error)?.message ?? error)}`);
  }
  const expectedLength = header.width * header.height * header.components;
  if (!decoded || decoded.length < expectedLength) throw corrupt('JPEG lossless frame decoded to fewer samples than declared');
  return { width: header.width, height: header.height, components: header.components, samples: decoded.subarray(0, expectedLength) };
}

interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array;
  getFrameInfo(): { width: number; height: number; bitsPerSample: number; componentCount: number; isSigned: boolean };
  decode(): void;
  readHeader?(): void;
  getInterleaveMode?(): number;
  delete(): void;
}

type WasmModule = Record<string, new () => WasmDecoder>;
const wasmModules = new Map<string, Promise<WasmModule>>();

/** The Emscripten factories read their .wasm beside themselves (fs, not fetch) under Node. */
function wasm(name: 'openjpeg' | 'charls' | 'openjph'): Promise<WasmModule> {
  let module = wasmModules.get(name);
  if (!module) {
    const factory = (
      name === 'openjpeg'
        ? require('@cornerstonejs/codec-openjpeg/decodewasmjs')
        : name === 'charls'
          ? require('@cornerstonejs/codec-charls/decodewasmjs')
          : require('@cornerstonejs/codec-openjph')
    ) as (options: object) => Promise<WasmModule>;
    module = factory({ print: () => undefined, printErr: () => undefined });
    wasmModules.set(name, module);
  }
  return module;
}

function samplesOf(bytes: Uint8Array, bitsPerSample: number, signed: boolean): Uint8Array | Uint16Array | Int16Array {
  const copy = new Uint8Array(bytes);
  if (bitsPerSample <= 8) return copy;
  return signed ? new Int16Array(copy.buffer, 0, copy.length >> 1) : new Uint16Array(copy.buffer, 0, copy.length >> 1);
}

/** JPEG-LS through CharLS (WASM). */
export async function decodeJpegLs(bytes: Uint8Array, expected: { width: number; height: number }, limits: FrameLimits): Promise<CodecFrame> {
  checkHeader(jpegFrameHeader(bytes), expected, limits, 'JPEG-LS');
  const module = await wasm('charls');
  const Decoder = module['JpegLSDecoder'] as new () => WasmDecoder;
  const decoder = new Decoder();
  try {
    decoder.getEncodedBuffer(bytes.length).set(bytes);
    decoder.decode();
    const info = decoder.getFrameInfo();
    const samples = samplesOf(decoder.getDecodedBuffer(), info.bitsPerSample, false);
    if (samples.length < info.width * info.height * info.componentCount) throw corrupt('JPEG-LS frame decoded to fewer samples than declared');
    // Interleave mode 0 (none): CharLS returns one plane per component, not interleaved samples.
    const planar = info.componentCount > 1 && decoder.getInterleaveMode?.() === 0;
    return {
      width: info.width,
      height: info.height,
      components: info.componentCount,
      samples: planar ? interleave(samples, info.width * info.height, info.componentCount) : samples,
    };
  } catch (error) {
    throw corrupt(`JPEG-LS frame could not be decoded: ${describe(error)}`);
  } finally {
    decoder.delete();
  }
}

/** JPEG 2000 through OpenJPEG (WASM); the header is read and checked before decoding. */
export async function decodeJpeg2000(bytes: Uint8Array, expected: { width: number; height: number }, limits: FrameLimits): Promise<CodecFrame> {
  const module = await wasm('openjpeg');
  const Decoder = module['J2KDecoder'] as new () => WasmDecoder;
  const decoder = new Decoder();
  try {
    // This OpenJPEG build reports the frame size only after decoding: read the SIZ marker first.
    const info = j2kSize(bytes);
    if (!info) throw corrupt('JPEG 2000 stream has no SIZ marker');
    if (info.components < 1 || info.components > 4) throw corrupt(`JPEG 2000 stream with ${info.components} components`);
    decoder.getEncodedBuffer(bytes.length).set(bytes);
    if (info.width * info.height > limits.maxPixels) {
      throw new ThoraxError('IMAGE_TOO_LARGE', `JPEG 2000 frame declares ${info.width}x${info.height}`, { stage });
    }
    if (info.width !== expected.width || info.height !== expected.height) {
      throw corrupt(`JPEG 2000 frame is ${info.width}x${info.height} but the DICOM header says ${expected.width}x${expected.height}`);
    }
    // OpenJPEG returns an empty or partial image for a cut-off stream instead of failing.
    const incomplete = j2kTruncation(bytes);
    if (incomplete) throw corrupt(`JPEG 2000 codestream ${incomplete}`);
    try {
      decoder.decode();
    } catch (error) {
      throw corrupt(`JPEG 2000 frame could not be decoded: ${describe(error)}`);
    }
    const after = decoder.getFrameInfo();
    const samples = samplesOf(decoder.getDecodedBuffer(), after.bitsPerSample, after.isSigned);
    if (samples.length < after.width * after.height * after.componentCount) throw corrupt('JPEG 2000 frame decoded to fewer samples than declared');
    return { width: after.width, height: after.height, components: after.componentCount, samples };
  } finally {
    decoder.delete();
  }
}

/** Planes (all of component 0, then 1, …) to interleaved samples. */
export function interleave<T extends Uint8Array | Uint16Array | Int16Array>(planar: T, pixels: number, components: number): T {
  const out = new (planar.constructor as new (length: number) => T)(pixels * components);
  for (let c = 0; c < components; c += 1) {
    const offset = c * pixels;
    for (let i = 0; i < pixels; i += 1) out[i * components + c] = planar[offset + i] as number;
  }
  return out;
}

/** High-Throughput JPEG 2000 (ISO 15444-15) through OpenJPH (WASM); SIZ is checked before decoding. */
export async function decodeHtj2k(bytes: Uint8Array, expected: { width: number; height: number }, limits: FrameLimits): Promise<CodecFrame> {
  const info = j2kSize(bytes);
  if (!info) throw corrupt('HTJ2K stream has no SIZ marker');
  if (info.components < 1 || info.components > 4) throw corrupt(`HTJ2K stream with ${info.components} components`);
  if (info.width * info.height > limits.maxPixels) {
    throw new ThoraxError('IMAGE_TOO_LARGE', `HTJ2K frame declares ${info.width}x${info.height}`, { stage });
  }
  if (info.width !== expected.width || info.height !== expected.height) {
    throw corrupt(`HTJ2K frame is ${info.width}x${info.height} but the DICOM header says ${expected.width}x${expected.height}`);
  }
  // OpenJPH decodes a cut-off stream without complaint, leaving the missing code blocks black.
  const incomplete = j2kTruncation(bytes);
  if (incomplete) throw corrupt(`HTJ2K codestream ${incomplete}`);
  const module = await wasm('openjph');
  const Decoder = module['HTJ2KDecoder'] as new () => WasmDecoder;
  const decoder = new Decoder();
  try {
    decoder.getEncodedBuffer(bytes.length).set(bytes);
    try {
      decoder.decode();
    } catch (error) {
      throw corrupt(`HTJ2K frame could not be decoded: ${describe(error)}`);
    }
    const after = decoder.getFrameInfo();
    if (after.bitsPerSample > 16) throw new ThoraxError('UNSUPPORTED_PIXEL_FORMAT', `HTJ2K with ${after.bitsPerSample}-bit samples`, { stage });
    const samples = samplesOf(decoder.getDecodedBuffer(), after.bitsPerSample, after.isSigned);
    if (samples.length < after.width * after.height * after.componentCount) throw corrupt('HTJ2K frame decoded to fewer samples than declared');
    return { width: after.width, height: after.height, components: after.componentCount, samples };
  } finally {
    decoder.delete();
  }
}

/**
 * Why a JPEG 2000 codestream is incomplete, or null: the main header's marker segments are
 * walked to the first SOT, each tile-part's Psot must fit in the data, and the last must be
 * followed by EOC (ISO 15444-1 A.4). With Psot 0 the last tile-part runs to EOC, which must end
 * the data but for 0x00 or 0xFF fragment padding.
 */
export function j2kTruncation(bytes: Uint8Array): string | null {
  const soc = codestreamStart(bytes);
  if (soc < 0) return 'has no SOC';
  let p = soc + 2;
  while (p + 4 <= bytes.length && bytes[p] === 0xff && bytes[p + 1] !== 0x90) {
    const length = ((bytes[p + 2] as number) << 8) | (bytes[p + 3] as number);
    if (length < 2) return 'has a marker segment shorter than its length field';
    p += 2 + length;
  }
  if (p + 12 > bytes.length || bytes[p] !== 0xff || bytes[p + 1] !== 0x90) return 'has no tile-part';
  while (p + 12 <= bytes.length && bytes[p] === 0xff && bytes[p + 1] === 0x90) {
    const psot = new DataView(bytes.buffer, bytes.byteOffset + p + 6, 4).getUint32(0);
    if (psot === 0) {
      // The last tile-part runs to EOC.
      let end = bytes.length;
      while (end > p && (bytes[end - 1] === 0 || bytes[end - 1] === 0xff)) end -= 1;
      return bytes[end - 2] === 0xff && bytes[end - 1] === 0xd9 ? null : 'is truncated (no EOC)';
    }
    if (psot < 14 || p + psot > bytes.length) return `is truncated (a tile-part of ${psot} bytes at offset ${p} runs past the end)`;
    p += psot;
  }
  // Whatever follows EOC (fragment padding, an encoder's trailer) is not part of the image.
  if (p + 2 <= bytes.length && bytes[p] === 0xff && bytes[p + 1] === 0xd9) return null;
  return 'is truncated (no EOC after the last tile-part)';
}

/** Image size and component count from a JPEG 2000 codestream's SIZ marker (PS3.5 / ISO 15444-1 A.5.1). */
/** Offset of SOC followed by SIZ within the first 4 KiB (a JP2 wrapper may precede it), or -1. */
function codestreamStart(bytes: Uint8Array): number {
  const limit = Math.min(bytes.length - 42, 4096);
  for (let p = 0; p <= limit; p += 1) {
    if (bytes[p] === 0xff && bytes[p + 1] === 0x4f && bytes[p + 2] === 0xff && bytes[p + 3] === 0x51) return p;
  }
  return -1;
}

export function j2kSize(bytes: Uint8Array): { width: number; height: number; components: number } | null {
  const p = codestreamStart(bytes);
  if (p < 0) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset + p + 4);
  const xsiz = view.getUint32(4);
  const ysiz = view.getUint32(8);
  const xo = view.getUint32(12);
  const yo = view.getUint32(16);
  if (xo > xsiz || yo > ysiz) return null;
  return { width: xsiz - xo, height: ysiz - yo, components: view.getUint16(36) };
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === 'number' ? `codec exception ${error}` : String(error);
}

/**
 * RLE Lossless (PS3.5 Annex G): a 64-byte header of up to 15 segment offsets, one segment per
 * byte plane (most significant first, per sample), each PackBits-coded. Returns interleaved
 * samples, 16-bit when bitsAllocated is 16.
 */
export function decodeRle(
  bytes: Uint8Array,
  frame: { width: number; height: number; samplesPerPixel: number; bitsAllocated: number },
): CodecFrame {
  const { width, height, samplesPerPixel: spp, bitsAllocated } = frame;
  if (bitsAllocated !== 8 && bitsAllocated !== 16) throw corrupt(`RLE with ${bitsAllocated} bits allocated`);
  const bytesPerSample = bitsAllocated / 8;
  const pixels = width * height;
  if (bytes.length < 64) throw corrupt('RLE frame shorter than its 64-byte header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const segments = view.getUint32(0, true);
  if (segments !== spp * bytesPerSample) throw corrupt(`RLE header lists ${segments} segments, expected ${spp * bytesPerSample}`);
  const offsets: number[] = [];
  for (let s = 0; s < segments; s += 1) offsets.push(view.getUint32(4 + s * 4, true));
  const out = bitsAllocated === 16 ? new Uint16Array(pixels * spp) : new Uint8Array(pixels * spp);
  const plane = new Uint8Array(pixels);
  for (let s = 0; s < segments; s += 1) {
    const start = offsets[s] as number;
    const end = s + 1 < segments ? (offsets[s + 1] as number) : bytes.length;
    if (start < 64 || end > bytes.length || end < start) throw corrupt(`RLE segment ${s} has offsets ${start}..${end}`);
    plane.fill(0);
    let o = 0;
    let p = start;
    while (p < end && o < pixels) {
      const n = bytes[p] as number;
      p += 1;
      if (n < 128) {
        const count = n + 1;
        if (p + count > end || o + count > pixels) throw corrupt(`RLE segment ${s} literal run overflows`);
        plane.set(bytes.subarray(p, p + count), o);
        p += count;
        o += count;
      } else if (n > 128) {
        const count = 257 - n;
        if (p >= end || o + count > pixels) throw corrupt(`RLE segment ${s} replicate run overflows`);
        plane.fill(bytes[p] as number, o, o + count);
        p += 1;
        o += count;
      }
    }
    if (o < pixels) throw corrupt(`RLE segment ${s} decodes to ${o} of ${pixels} bytes`);
    const sample = Math.floor(s / bytesPerSample);
    const shift = (bytesPerSample - 1 - (s % bytesPerSample)) * 8;
    for (let i = 0; i < pixels; i += 1) out[i * spp + sample] = (out[i * spp + sample] as number) | ((plane[i] as number) << shift);
  }
  return { width, height, components: spp, samples: out };
}
