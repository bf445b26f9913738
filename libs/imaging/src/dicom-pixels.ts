import { ThoraxError } from '@thorax/contracts';
import { type DataSet, type Element, readEncapsulatedImageFrame, readEncapsulatedPixelDataFromFragments } from 'dicom-parser';
import { type CodecFrame, decodeHtj2k, decodeJpeg, decodeJpeg2000, decodeJpegLossless, decodeJpegLs, decodeRle } from './codecs';
import { isSupportedTransferSyntax, type ParsedDicom, TRANSFER_SYNTAXES } from './dicom';
import { type Lut, type MonochromeTransform, type VoiLutFunction, monochromeToGrey, samplesToGrey, usableWindow, type VoiUsed } from './grey-levels';

export interface DicomPixelLimits {
  maxPixels: number;
  maxFrames: number;
  timeoutSeconds: number;
}

/** Display grey levels of a DICOM image's first frame, and how they were made. */
export interface DicomGrey {
  grey: Float32Array;
  width: number;
  height: number;
  frames: number;
  frameIndex: number;
  bitsStored: number;
  photometricInterpretation: string;
  voi: VoiUsed | 'colour';
}

const stage = 'preprocess' as const;
const MONOCHROME = new Set(['MONOCHROME1', 'MONOCHROME2']);
const COLOUR = new Set(['RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_ICT', 'YBR_RCT', 'PALETTE COLOR']);

function unsupported(message: string): ThoraxError {
  return new ThoraxError('UNSUPPORTED_PIXEL_FORMAT', message, { stage });
}

function corrupt(message: string): ThoraxError {
  return new ThoraxError('CORRUPT_IMAGE', message, { stage });
}

/** Checks the image pixel module before any pixel is touched (cheap; ingest and preprocess). */
export function checkPixelModule(parsed: ParsedDicom, limits: Pick<DicomPixelLimits, 'maxPixels' | 'maxFrames'>, at: 'ingest' | 'preprocess'): void {
  const i = parsed.info;
  if (!isSupportedTransferSyntax(i.transferSyntaxUid)) {
    throw new ThoraxError('UNSUPPORTED_TRANSFER_SYNTAX', `transfer syntax ${i.transferSyntaxUid} is not decoded`, { stage: at });
  }
  if (!i.hasPixelData) throw new ThoraxError('UNSUPPORTED_PIXEL_FORMAT', 'no Pixel Data (7FE0,0010) element', { stage: at });
  if (i.rows <= 0 || i.columns <= 0) throw new ThoraxError('CORRUPT_IMAGE', `image is ${i.columns}x${i.rows}`, { stage: at });
  if (i.rows * i.columns > limits.maxPixels) {
    throw new ThoraxError('IMAGE_TOO_LARGE', `${i.columns}x${i.rows} exceeds ${limits.maxPixels} pixels`, { stage: at });
  }
  if (i.numberOfFrames > limits.maxFrames) {
    throw new ThoraxError('TOO_MANY_FRAMES', `${i.numberOfFrames} frames exceeds ${limits.maxFrames}`, { stage: at });
  }
  const pi = i.photometricInterpretation;
  if (!MONOCHROME.has(pi) && !COLOUR.has(pi)) throw new ThoraxError('UNSUPPORTED_PIXEL_FORMAT', `photometric interpretation "${pi}"`, { stage: at });
  const spp = MONOCHROME.has(pi) || pi === 'PALETTE COLOR' ? 1 : 3;
  if (i.samplesPerPixel !== spp) throw new ThoraxError('CORRUPT_IMAGE', `${pi} with ${i.samplesPerPixel} samples per pixel`, { stage: at });
  if (i.bitsAllocated !== 8 && i.bitsAllocated !== 16) {
    throw new ThoraxError('UNSUPPORTED_PIXEL_FORMAT', `${i.bitsAllocated} bits allocated (8 and 16 are decoded)`, { stage: at });
  }
  if (i.bitsStored < 1 || i.bitsStored > i.bitsAllocated) {
    throw new ThoraxError('CORRUPT_IMAGE', `${i.bitsStored} bits stored in ${i.bitsAllocated} allocated`, { stage: at });
  }
  if (i.highBit !== -1 && i.highBit !== i.bitsStored - 1) {
    throw new ThoraxError('UNSUPPORTED_PIXEL_FORMAT', `high bit ${i.highBit} with ${i.bitsStored} bits stored`, { stage: at });
  }
}

/** The first frame's bytes: native slice or the concatenated fragments of an encapsulated frame. */
function frameBytes(parsed: ParsedDicom): Uint8Array {
  const { info, dataSet } = parsed;
  const element = dataSet.elements['x7fe00010'] as Element;
  const codec = TRANSFER_SYNTAXES[info.transferSyntaxUid as keyof typeof TRANSFER_SYNTAXES].codec;
  const bytes = dataSet.byteArray;
  if (codec === 'native') {
    const frameLength = nativeFrameLength(info);
    if (element.encapsulatedPixelData) throw corrupt('native transfer syntax with encapsulated pixel data');
    const available = Math.min(element.length, bytes.length - element.dataOffset);
    if (available < frameLength) throw corrupt(`pixel data holds ${Math.max(0, available)} bytes, a frame needs ${frameLength}`);
    // An odd-length frame of byte-swapped words ends in the high byte of its last word: take the pair.
    const span = bigEndianWords(parsed) && frameLength % 2 === 1 && available > frameLength ? frameLength + 1 : frameLength;
    return bytes.subarray(element.dataOffset, element.dataOffset + span);
  }
  if (!element.encapsulatedPixelData || !element.fragments?.length) throw corrupt('compressed transfer syntax without encapsulated fragments');
  for (const f of element.fragments) {
    if (f.position < 0 || f.position + f.length > bytes.length) throw corrupt('pixel data fragment runs past the end of the file');
  }
  try {
    if (info.numberOfFrames === 1) return readEncapsulatedPixelDataFromFragments(dataSet, element, 0, element.fragments.length);
    if (element.basicOffsetTable?.length) return readEncapsulatedImageFrame(dataSet, element, 0);
    if (element.fragments.length === info.numberOfFrames) return readEncapsulatedPixelDataFromFragments(dataSet, element, 0, 1);
    // No offset table and several fragments per frame: the first frame ends where the second
    // fragment starting with a JPEG SOI / J2K SOC marker begins.
    const next = element.fragments.findIndex((f, k) => k > 0 && bytes[f.position] === 0xff && (bytes[f.position + 1] === 0xd8 || bytes[f.position + 1] === 0x4f));
    return readEncapsulatedPixelDataFromFragments(dataSet, element, 0, next > 0 ? next : element.fragments.length);
  } catch (error) {
    throw corrupt(`encapsulated frame could not be read: ${String((error as Error)?.message ?? error)}`);
  }
}

/**
 * Bytes of one uncompressed frame. YBR_FULL_422 stores two samples per pixel (Y1 Y2 Cb Cr for
 * each pair of pixels, PS3.3 C.7.6.3.1.2), every other colour format three, monochrome one.
 */
function nativeFrameLength(info: ParsedDicom['info']): number {
  const samples = info.photometricInterpretation === 'YBR_FULL_422' ? 2 : info.samplesPerPixel;
  return info.rows * info.columns * samples * (info.bitsAllocated / 8);
}

/** Explicit VR big endian with 8-bit samples in OW: 16-bit words, so each byte pair is swapped (PS3.5 A.3). */
function bigEndianWords(parsed: ParsedDicom): boolean {
  const { info, dataSet } = parsed;
  return info.bitsAllocated === 8 && info.transferSyntaxUid === '1.2.840.10008.1.2.2' && dataSet.elements['x7fe00010']?.vr === 'OW';
}

function nativeSamples(raw: Uint8Array, parsed: ParsedDicom): Uint8Array | Uint16Array {
  const { info } = parsed;
  if (info.bitsAllocated === 8) {
    if (!bigEndianWords(parsed)) return raw;
    const length = nativeFrameLength(info);
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i += 1) out[i] = raw[i ^ 1] ?? 0;
    return out;
  }
  const words = wordsOf(raw, info.transferSyntaxUid === '1.2.840.10008.1.2.2');
  if (info.planarConfiguration === 1 && info.samplesPerPixel === 3) return deplanarise(words, info.rows * info.columns);
  return words;
}

const LITTLE_ENDIAN_HOST = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * 16-bit words of an uncompressed frame. Little-endian words on a little-endian host at an even
 * offset are a view of the file's bytes (no copy, nothing written through it); otherwise one
 * native copy, byte-swapped natively for big-endian data.
 */
function wordsOf(raw: Uint8Array, bigEndian: boolean): Uint16Array {
  const n = raw.length >> 1;
  if (!LITTLE_ENDIAN_HOST) {
    const out = new Uint16Array(n);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < n; i += 1) out[i] = view.getUint16(i * 2, !bigEndian);
    return out;
  }
  if (!bigEndian && raw.byteOffset % 2 === 0) return new Uint16Array(raw.buffer, raw.byteOffset, n);
  const out = new Uint16Array(n);
  new Uint8Array(out.buffer).set(raw.subarray(0, n * 2));
  if (bigEndian) Buffer.from(out.buffer, out.byteOffset, out.byteLength).swap16();
  return out;
}

/** YBR_FULL_422 (Y1 Y2 Cb Cr per pixel pair) to interleaved Y Cb Cr, chroma repeated. */
function expand422<T extends Uint8Array | Uint16Array>(packed: T, pixels: number): T {
  const out = (packed instanceof Uint16Array ? new Uint16Array(pixels * 3) : new Uint8Array(pixels * 3)) as T;
  for (let i = 0; i < pixels; i += 1) {
    const pair = (i >> 1) * 4;
    out[i * 3] = packed[pair + (i & 1)] as number;
    out[i * 3 + 1] = packed[pair + 2] as number;
    out[i * 3 + 2] = packed[pair + 3] as number;
  }
  return out;
}

function deplanarise<T extends Uint8Array | Uint16Array>(planar: T, pixels: number): T {
  const out = (planar instanceof Uint16Array ? new Uint16Array(planar.length) : new Uint8Array(planar.length)) as T;
  for (let i = 0; i < pixels; i += 1) for (let s = 0; s < 3; s += 1) out[i * 3 + s] = planar[s * pixels + i] as number;
  return out;
}

async function decodeFrame(parsed: ParsedDicom, limits: DicomPixelLimits): Promise<{ samples: ArrayLike<number>; components: number }> {
  const { info } = parsed;
  const raw = frameBytes(parsed);
  const expected = { width: info.columns, height: info.rows };
  const codec = TRANSFER_SYNTAXES[info.transferSyntaxUid as keyof typeof TRANSFER_SYNTAXES].codec;
  let frame: CodecFrame;
  switch (codec) {
    case 'native': {
      const samples = nativeSamples(raw, parsed);
      if (info.photometricInterpretation === 'YBR_FULL_422') {
        if (info.columns % 2 === 1) throw unsupported(`uncompressed YBR_FULL_422 with an odd width (${info.columns})`);
        return { samples: expand422(samples, info.rows * info.columns), components: 3 };
      }
      if (info.bitsAllocated === 8 && info.planarConfiguration === 1 && info.samplesPerPixel === 3) {
        return { samples: deplanarise(samples, info.rows * info.columns), components: 3 };
      }
      return { samples, components: info.samplesPerPixel };
    }
    case 'jpeg':
      frame = await decodeJpeg(raw, expected, limits, info.photometricInterpretation);
      break;
    case 'htj2k':
      frame = await decodeHtj2k(raw, expected, limits);
      break;
    case 'jpeg-lossless':
      frame = decodeJpegLossless(raw, expected, limits);
      break;
    case 'jpeg-ls':
      frame = await decodeJpegLs(raw, expected, limits);
      break;
    case 'jpeg2000':
      frame = await decodeJpeg2000(raw, expected, limits);
      break;
    case 'rle':
      frame = decodeRle(raw, { width: info.columns, height: info.rows, samplesPerPixel: info.samplesPerPixel, bitsAllocated: info.bitsAllocated });
      break;
  }
  if (frame.width !== info.columns || frame.height !== info.rows) {
    throw corrupt(`decoded frame is ${frame.width}x${frame.height}, header says ${info.columns}x${info.rows}`);
  }
  if (frame.components !== info.samplesPerPixel) {
    throw corrupt(`decoded frame has ${frame.components} components, header says ${info.samplesPerPixel}`);
  }
  return { samples: frame.samples, components: frame.components };
}

/**
 * Stored values masked to Bits Stored, sign-extended when Pixel Representation is 1. Unsigned
 * samples in a Uint8Array or Uint16Array whose bits above Bits Stored are all clear (the usual
 * case; one read-only pass checks it) are used as they are, without a copy.
 */
function storedValues(samples: ArrayLike<number>, pixels: number, bitsStored: number, signed: boolean): Int32Array | Uint16Array | Uint8Array {
  if (!signed && samples.length === pixels && (samples instanceof Uint16Array || samples instanceof Uint8Array) && bitsStored <= samples.BYTES_PER_ELEMENT * 8) {
    const top = 2 ** bitsStored - 1;
    let clean = true;
    if (bitsStored < samples.BYTES_PER_ELEMENT * 8) {
      for (let i = 0; i < pixels; i += 1) {
        if ((samples[i] as number) > top) {
          clean = false;
          break;
        }
      }
    }
    if (clean) return samples;
  }
  const mask = bitsStored >= 32 ? 0xffffffff : 2 ** bitsStored - 1;
  const sign = 2 ** (bitsStored - 1);
  const out = new Int32Array(pixels);
  for (let i = 0; i < pixels; i += 1) {
    const v = ((samples[i] as number) & mask) >>> 0;
    out[i] = signed && v >= sign ? v - 2 * sign : v;
  }
  return out;
}

/** A monochrome frame's first `pixels` samples as unsigned 8- or 16-bit words (views, no copy), or null for any other array. */
function rawWords(samples: ArrayLike<number>, pixels: number): Uint8Array | Uint16Array | null {
  if (samples.length < pixels) return null;
  if (samples instanceof Uint8Array || samples instanceof Uint16Array) return samples.length === pixels ? samples : samples.subarray(0, pixels);
  if (samples instanceof Int16Array) return new Uint16Array(samples.buffer, samples.byteOffset, pixels);
  return null;
}

function readLut(dataSet: DataSet, sequenceTag: string): Lut | undefined {
  const item = dataSet.elements[sequenceTag]?.items?.[0]?.dataSet;
  if (!item) return undefined;
  const descriptor = item.elements['x00283002'];
  const data = item.elements['x00283006'];
  if (!descriptor || !data || descriptor.length < 6) throw corrupt(`LUT in ${sequenceTag} lacks a descriptor or data`);
  const entries = item.uint16('x00283002', 0) || 65536;
  // First mapped value is US or SS depending on pixel representation; read the raw 16 bits.
  const firstRaw = item.uint16('x00283002', 1) ?? 0;
  const bits = item.uint16('x00283002', 2) ?? 16;
  const signedFirst = (dataSet.uint16('x00280103') ?? 0) === 1 && firstRaw >= 0x8000;
  const firstMapped = signedFirst ? firstRaw - 0x10000 : firstRaw;
  if (bits < 1 || bits > 16) throw corrupt(`LUT with ${bits} bits per entry`);
  const count = Math.floor(data.length / 2);
  if (count < entries) throw corrupt(`LUT declares ${entries} entries, holds ${count}`);
  const values = new Uint16Array(entries);
  for (let k = 0; k < entries; k += 1) values[k] = item.byteArrayParser.readUint16(item.byteArray, data.dataOffset + k * 2);
  return { firstMapped, bits, data: values };
}

/**
 * Expands Segmented Palette Color LUT Data (PS3.3 C.7.9.2): a run of 16-bit words, each segment
 * an opcode and a length — 0 discrete (length values), 1 linear (length steps from the previous
 * value to the next word, rounded half to even as pydicom does), 2 indirect (length segments
 * copied from the 32-bit word offset that follows, least significant word first). Every write
 * is bounded by `entries`; recursion by `depth`.
 */
export function expandSegmentedLut(words: Uint16Array, entries: number, depth = 0): Uint16Array {
  const out = new Uint16Array(entries);
  const n = expandSegments(words, 0, out, 0, Number.POSITIVE_INFINITY, depth);
  if (n !== entries) throw corrupt(`segmented palette expands to ${n} entries, its descriptor says ${entries}`);
  return out;
}

function expandSegments(words: Uint16Array, start: number, out: Uint16Array, written: number, maxSegments: number, depth: number): number {
  if (depth > 4) throw corrupt('segmented palette nests indirect segments too deep');
  let p = start;
  let n = written;
  let segments = 0;
  while (p + 1 < words.length && segments < maxSegments) {
    const opcode = words[p] as number;
    const length = words[p + 1] as number;
    p += 2;
    if (opcode === 0) {
      if (p + length > words.length || n + length > out.length) throw corrupt('segmented palette discrete segment overflows');
      out.set(words.subarray(p, p + length), n);
      p += length;
      n += length;
    } else if (opcode === 1) {
      if (n === 0) throw corrupt('segmented palette starts with a linear segment');
      if (p >= words.length || n + length > out.length) throw corrupt('segmented palette linear segment overflows');
      const y0 = out[n - 1] as number;
      const y1 = words[p] as number;
      p += 1;
      for (let j = 1; j <= length; j += 1) out[n + j - 1] = roundHalfEven(y0 + ((y1 - y0) * j) / length);
      n += length;
    } else if (opcode === 2) {
      if (n === 0) throw corrupt('segmented palette starts with an indirect segment');
      if (p + 1 >= words.length) throw corrupt('segmented palette indirect segment is truncated');
      const offset = (words[p] as number) + (words[p + 1] as number) * 0x10000;
      p += 2;
      if (offset >= words.length) throw corrupt('segmented palette indirect offset points past the data');
      n = expandSegments(words, offset, out, n, length, depth + 1);
    } else {
      throw corrupt(`segmented palette has segment opcode ${opcode}`);
    }
    segments += 1;
  }
  return n;
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function paletteToRgb(dataSet: DataSet, indices: ArrayLike<number>): { rgb: Uint16Array; maxValue: number } {
  const channels = ['x00281201', 'x00281202', 'x00281203'] as const;
  const segmentedChannels = ['x00281221', 'x00281222', 'x00281223'] as const;
  const descriptors = ['x00281101', 'x00281102', 'x00281103'] as const;
  const luts = channels.map((tag, c) => {
    const descriptor = descriptors[c] as string;
    const entries = dataSet.uint16(descriptor, 0) || 65536;
    const first = dataSet.uint16(descriptor, 1) ?? 0;
    const bits = dataSet.uint16(descriptor, 2) ?? 16;
    if (dataSet.elements[descriptor] === undefined) throw corrupt('PALETTE COLOR without its lookup tables');
    if (bits !== 8 && bits !== 16) throw corrupt(`palette with ${bits}-bit entries`);
    const element = dataSet.elements[tag];
    if (!element) {
      const segmented = dataSet.elements[segmentedChannels[c] as string];
      if (!segmented) throw corrupt('PALETTE COLOR without its lookup tables');
      if (bits !== 16) throw unsupported('segmented palette with 8-bit entries');
      const words = new Uint16Array(Math.floor(segmented.length / 2));
      for (let k = 0; k < words.length; k += 1) words[k] = dataSet.byteArrayParser.readUint16(dataSet.byteArray, segmented.dataOffset + k * 2);
      return { first, bits, data: expandSegmentedLut(words, entries) };
    }
    if (Math.floor(element.length / 2) < entries && !(bits === 8 && element.length >= entries)) throw corrupt('palette shorter than its descriptor');
    const data = new Uint16Array(entries);
    for (let k = 0; k < entries; k += 1) {
      data[k] = bits === 16 ? dataSet.byteArrayParser.readUint16(dataSet.byteArray, element.dataOffset + k * 2) : (dataSet.byteArray[element.dataOffset + k] as number);
    }
    return { first, bits, data };
  });
  const bits = (luts[0] as { bits: number }).bits;
  const rgb = new Uint16Array(indices.length * 3);
  for (let i = 0; i < indices.length; i += 1) {
    for (let c = 0; c < 3; c += 1) {
      const lut = luts[c] as { first: number; data: Uint16Array };
      let k = (indices[i] as number) - lut.first;
      if (k < 0) k = 0;
      if (k > lut.data.length - 1) k = lut.data.length - 1;
      rgb[i * 3 + c] = lut.data[k] as number;
    }
  }
  return { rgb, maxValue: 2 ** bits - 1 };
}

/**
 * The first frame as decoded, before any lookup table: monochrome as stored values (masked to
 * Bits Stored, sign-extended), colour as interleaved samples. Reference decoders are compared
 * against this (libs/imaging/src/reference.integration-spec.ts).
 */
export async function decodeFirstFrame(parsed: ParsedDicom, limits: DicomPixelLimits): Promise<{ samples: ArrayLike<number>; components: number }> {
  checkPixelModule(parsed, limits, 'preprocess');
  const { info } = parsed;
  const frame = await decodeFrame(parsed, limits);
  if (!MONOCHROME.has(info.photometricInterpretation)) return frame;
  return { samples: storedValues(frame.samples, info.rows * info.columns, info.bitsStored, info.pixelRepresentation === 1), components: 1 };
}

/** Decodes the first frame of a parsed DICOM file into display grey levels (into `into`, rows × columns long, when given). */
export async function dicomToGrey(parsed: ParsedDicom, limits: DicomPixelLimits, into?: Float32Array): Promise<DicomGrey> {
  checkPixelModule(parsed, limits, 'preprocess');
  const { info, dataSet } = parsed;
  const pixels = info.rows * info.columns;
  const { samples, components } = await decodeFrame(parsed, limits);
  const signed = info.pixelRepresentation === 1;
  const pi = info.photometricInterpretation;
  const base = {
    width: info.columns,
    height: info.rows,
    frames: info.numberOfFrames,
    frameIndex: 0,
    bitsStored: info.bitsStored,
    photometricInterpretation: pi,
  };
  if (MONOCHROME.has(pi)) {
    const words = rawWords(samples, pixels);
    const transform: MonochromeTransform = {
      slope: info.rescaleSlope,
      intercept: info.rescaleIntercept,
      invert: pi === 'MONOCHROME1',
    };
    const modalityLut = readLut(dataSet, 'x00283000');
    if (modalityLut) transform.modalityLut = modalityLut;
    const voiLut = readLut(dataSet, 'x00283010');
    const fn = (['LINEAR', 'LINEAR_EXACT', 'SIGMOID'].includes(info.voiLutFunction) ? info.voiLutFunction : 'LINEAR') as VoiLutFunction;
    if (voiLut) transform.voiLut = voiLut;
    else if (info.windowCenter !== null && info.windowWidth !== null && usableWindow(info.windowCenter, info.windowWidth, fn)) {
      transform.window = { center: info.windowCenter, width: info.windowWidth, fn };
    }
    // The samples go in as decoded: masking to Bits Stored and sign extension are folded into
    // the lookup table (grey-levels.ts), one pass over the pixels in all.
    const frame = words ? { values: words, bitsStored: info.bitsStored, signed, raw: true } : { values: storedValues(samples, pixels, info.bitsStored, signed), bitsStored: info.bitsStored, signed };
    const { grey, voi } = monochromeToGrey(frame, transform, into);
    return { ...base, grey, voi };
  }
  if (pi === 'PALETTE COLOR') {
    const indices = storedValues(samples, pixels, info.bitsStored, false);
    const { rgb, maxValue } = paletteToRgb(dataSet, indices);
    return { ...base, grey: samplesToGrey(rgb, pixels, 3, maxValue, false, into), voi: 'colour' };
  }
  if (components !== 3) throw unsupported(`${pi} frame with ${components} components`);
  const maxValue = 2 ** info.bitsStored - 1;
  const codec = TRANSFER_SYNTAXES[info.transferSyntaxUid as keyof typeof TRANSFER_SYNTAXES].codec;
  // Uncompressed and RLE YBR_FULL keep Y, Cb, Cr: the Y plane is already the luma. JPEG and
  // JPEG 2000 decoders return RGB.
  if ((pi === 'YBR_FULL' || pi === 'YBR_FULL_422') && (codec === 'native' || codec === 'rle')) {
    const y = into ?? new Float32Array(pixels);
    if (y.length !== pixels) throw new RangeError(`grey plane holds ${y.length} levels, the image has ${pixels}`);
    for (let i = 0; i < pixels; i += 1) {
      const v = (samples[i * 3] as number) & maxValue;
      y[i] = maxValue === 255 ? v : (v * 255) / maxValue;
    }
    return { ...base, grey: y, voi: 'colour' };
  }
  return { ...base, grey: samplesToGrey(samples, pixels, 3, maxValue, false, into), voi: 'colour' };
}
