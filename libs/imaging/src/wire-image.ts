import { ThoraxError } from '@thorax/contracts';
import sharp, { type Metadata, type Sharp } from 'sharp';
import { parseDicomFile } from './dicom';
import { checkPixelModule, dicomToGrey } from './dicom-pixels';
import { monochromeToGrey, samplesToGrey, type VoiUsed } from './grey-levels';
import { type MediaType, sniffMediaType } from './media-type';
import { resizeGreyPlane, withGreyPlane, withWireResize } from './resize';

/**
 * Name of the wire recipe (docs/imaging.md); carried in every PreprocessedImage and recorded in
 * the model's metadata. v2: libvips Lanczos-3 (v1 was a hand-written float64 Lanczos-3).
 */
export const WIRE_PREPROCESSING = 'thorax.wire.v2';

export interface WireImageOptions {
  /** Side of the square wire image (docs/contract.md: default 256). */
  size: number;
  /** Largest accepted image in pixels (width * height), a decompression-bomb guard. */
  maxInputPixels: number;
  /** Smallest accepted shorter side, in pixels. */
  minInputSide: number;
  /** Most frames a multi-frame DICOM may declare. */
  maxFrames: number;
  /** Largest DICOM dataset after inflating a deflated transfer syntax, bytes. */
  maxInflatedBytes: number;
  /** Decode budget per image, milliseconds (enforced by the decode pool; sharp gets it too). */
  decodeTimeoutMs: number;
}

export const DEFAULT_WIRE_OPTIONS: WireImageOptions = {
  size: 256,
  maxInputPixels: 50_000_000,
  minInputSide: 64,
  maxFrames: 1000,
  maxInflatedBytes: 268_435_456,
  decodeTimeoutMs: 20_000,
};

export interface WireImage {
  /** size * size bytes, 8-bit grey, row-major. */
  pixels: Uint8Array;
  width: number;
  height: number;
  source: {
    width: number;
    height: number;
    bitsStored: number;
    channels: number;
    format: 'png' | 'jpeg' | 'dicom';
    frames: number;
    frameIndex: number;
    photometricInterpretation: string;
    /** How grey levels were chosen: VOI LUT, window, robust percentiles, colour luma, or as stored (8-bit). */
    voi: VoiUsed | 'colour' | 'as-stored';
  };
}

const stage = 'preprocess' as const;
let sharpConfigured = false;

/**
 * sharp's process-wide settings for untrusted input, set once and explicitly: no operation
 * cache (it would keep decoded images of other patients in memory) and one libvips thread per
 * image (parallelism comes from the libuv pool and the decode workers).
 */
function configureSharp(): void {
  if (sharpConfigured) return;
  sharp.cache(false);
  sharp.concurrency(1);
  sharpConfigured = true;
}

function checkSize(width: number, height: number, options: WireImageOptions): void {
  if (width * height > options.maxInputPixels) {
    throw new ThoraxError('IMAGE_TOO_LARGE', `${width}x${height} exceeds ${options.maxInputPixels} pixels`, { stage });
  }
  if (Math.min(width, height) < options.minInputSide) {
    throw new ThoraxError('IMAGE_TOO_SMALL', `${width}x${height} is below ${options.minInputSide} px`, { stage });
  }
}

function timeoutSeconds(options: WireImageOptions): number {
  return Math.max(1, Math.ceil(options.decodeTimeoutMs / 1000));
}

/**
 * Any accepted file (DICOM, PNG, JPEG) to the wire image: display grey levels (grey-levels.ts),
 * then shorter side to `size` with libvips' Lanczos-3 and a centred square crop (resize.ts).
 * Decoder warnings fail the image (untrusted input).
 */
export async function toWireImage(bytes: Uint8Array, options: WireImageOptions = DEFAULT_WIRE_OPTIONS): Promise<WireImage> {
  const type: MediaType | null = sniffMediaType(bytes);
  if (!type) throw new ThoraxError('UNSUPPORTED_MEDIA_TYPE', 'bytes are not DICOM, PNG or JPEG', { stage });
  configureSharp();
  if (type === 'application/dicom') return dicomToWire(bytes, options);
  return rasterToWire(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), options);
}

async function dicomToWire(bytes: Uint8Array, options: WireImageOptions): Promise<WireImage> {
  const parsed = parseDicomFile(bytes, { maxInflatedBytes: options.maxInflatedBytes }, { untilPixelData: false, stage });
  const limits = { maxPixels: options.maxInputPixels, maxFrames: options.maxFrames, timeoutSeconds: timeoutSeconds(options) };
  checkPixelModule(parsed, limits, stage);
  checkSize(parsed.info.columns, parsed.info.rows, options);
  const { columns, rows } = parsed.info;
  const [decoded, pixels] = await withGreyPlane(columns * rows, async (plane) => {
    const grey = await dicomToGrey(parsed, limits, plane);
    return [grey, await resizeGreyPlane(grey.grey, grey.width, grey.height, options.size, limits.timeoutSeconds)] as const;
  });
  return {
    pixels,
    width: options.size,
    height: options.size,
    source: {
      width: decoded.width,
      height: decoded.height,
      bitsStored: decoded.bitsStored,
      channels: parsed.info.samplesPerPixel,
      format: 'dicom',
      frames: decoded.frames,
      frameIndex: decoded.frameIndex,
      photometricInterpretation: decoded.photometricInterpretation,
      voi: decoded.voi,
    },
  };
}

/**
 * PNG/JPEG: EXIF orientation applied, then the raw samples. 8-bit grey (the common case) is one
 * native pipeline from the encoded bytes to the wire bytes: decode, orient, resize, crop, no
 * pixel touched in JavaScript. 16-bit grey keeps its precision and is windowed like a DICOM
 * without VOI (robust percentiles); colour becomes luma, alpha is flattened on black; those
 * float planes are then resized natively (resize.ts). 16-bit colour is read at 8 bits per
 * channel. Embedded ICC profiles are ignored (grey levels are used as stored, as in training).
 */
async function rasterToWire(bytes: Buffer, options: WireImageOptions): Promise<WireImage> {
  let meta: RasterHeader;
  try {
    // A plain PNG's header is read here; sharp's metadata() costs a pass through its native
    // binding and a libuv hop per image, about as much main-thread time as the decode call.
    meta = pngHeader(bytes) ?? (await sharp(bytes, { failOn: 'warning', limitInputPixels: false }).metadata());
  } catch (error) {
    throw new ThoraxError('CORRUPT_IMAGE', `unreadable image header: ${(error as Error).message}`, { stage });
  }
  if (meta.format !== 'png' && meta.format !== 'jpeg') {
    throw new ThoraxError('UNSUPPORTED_MEDIA_TYPE', `decoder found ${meta.format ?? 'unknown'} data`, { stage });
  }
  if (meta.space === 'cmyk') throw new ThoraxError('UNSUPPORTED_PIXEL_FORMAT', 'CMYK JPEG', { stage });
  const width = meta.autoOrient?.width ?? meta.width ?? 0;
  const height = meta.autoOrient?.height ?? meta.height ?? 0;
  checkSize(width, height, options);
  const deep = (meta.depth === 'ushort' || meta.depth === 'short') && meta.channels === 1;
  const seconds = timeoutSeconds(options);
  const decoder = (): Sharp =>
    sharp(bytes, { failOn: 'warning', limitInputPixels: options.maxInputPixels, autoOrient: true, ignoreIcc: true }).timeout({ seconds });
  let pixels: Uint8Array;
  let voi: WireImage['source']['voi'];
  let channels: number;
  try {
    if (deep) {
      const { data, info } = await decoder().pipelineColourspace('grey16').toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
      assertSize(info, width, height, 1);
      const samples = new Uint16Array(data.buffer, data.byteOffset, data.length >> 1);
      [pixels, voi] = await withGreyPlane(width * height, async (plane) => {
        const result = monochromeToGrey({ values: samples, bitsStored: 16, signed: false, raw: true }, { slope: 1, intercept: 0, invert: false }, plane);
        return [await resizeGreyPlane(result.grey, width, height, options.size, seconds), result.voi] as const;
      });
      channels = 1;
    } else if (meta.channels === 1) {
      // Grey stays one channel end to end. The extract of the whole (oriented) image before the
      // resize keeps sharp from reloading a JPEG with libjpeg's DCT shrink-on-load (it skips that
      // when an extract precedes the resize); it costs nothing, where pinning a b-w pipeline
      // colourspace, which does the same, doubles the CPU per image.
      const whole = decoder().extract({ left: 0, top: 0, width, height });
      const { data, info } = await withWireResize(whole, width, height, options.size)
        .toColourspace('b-w')
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      assertSize(info, options.size, options.size, 1);
      pixels = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      voi = 'as-stored';
      channels = 1;
    } else {
      const { data, info } = await decoder().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
      assertSize(info, width, height, 0);
      const greyAlpha = meta.channels === 2 && info.channels === 4;
      channels = greyAlpha ? 2 : info.channels;
      pixels = await withGreyPlane(width * height, async (grey) => {
        if (greyAlpha) {
          // Grey + alpha comes back as grey, grey, grey, alpha (sharp drops alpha in a b-w
          // pipeline): grey flattened on black, g × a / 255, as samplesToGrey computes it.
          for (let i = 0; i < grey.length; i += 1) grey[i] = ((data[i * 4] as number) * (data[i * 4 + 3] as number)) / 255;
        } else {
          samplesToGrey(data, width * height, info.channels, 255, info.channels === 2 || info.channels === 4, grey);
        }
        return resizeGreyPlane(grey, width, height, options.size, seconds);
      });
      voi = channels >= 3 ? 'colour' : 'as-stored';
    }
  } catch (error) {
    if (error instanceof ThoraxError) throw error;
    throw new ThoraxError('CORRUPT_IMAGE', `image could not be decoded: ${(error as Error).message}`, { stage });
  }
  return {
    pixels,
    width: options.size,
    height: options.size,
    source: {
      width,
      height,
      bitsStored: deep ? 16 : 8,
      channels,
      format: meta.format,
      frames: 1,
      frameIndex: 0,
      photometricInterpretation: '',
      voi,
    },
  };
}

/** What rasterToWire needs of an image header: sharp's Metadata, or pngHeader's reading of it. */
type RasterHeader = Pick<Metadata, 'format' | 'width' | 'height' | 'autoOrient' | 'depth' | 'channels'> & Partial<Pick<Metadata, 'space'>>;

/** PNG colour type (IHDR) → the channels libvips decodes it to, for the types read here. */
const PNG_CHANNELS: Readonly<Record<number, number>> = { 0: 1, 2: 3, 4: 2, 6: 4 };
const PNG_DEPTHS: Readonly<Record<number, readonly number[]>> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 4: [8, 16], 6: [8, 16] };

/**
 * The header of a plain PNG as sharp's metadata() reports it (format, size, sample depth,
 * channels), read from its IHDR chunk and the chunk list up to the first IDAT; null, so that
 * sharp reads it, for anything else: a palette image, a tRNS chunk (libvips adds an alpha
 * channel), an eXIf chunk (an orientation to apply), or a header that does not parse.
 */
export function pngHeader(bytes: Buffer): RasterHeader | null {
  if (sniffMediaType(bytes) !== 'image/png' || bytes.length < 33) return null;
  if (bytes.readUInt32BE(8) !== 13 || bytes.toString('latin1', 12, 16) !== 'IHDR') return null;
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  const bitDepth = bytes[24] as number;
  const colourType = bytes[25] as number;
  const channels = PNG_CHANNELS[colourType];
  if (!channels || !PNG_DEPTHS[colourType]?.includes(bitDepth) || width === 0 || height === 0) return null;
  if (width > 0x7fffffff || height > 0x7fffffff || bytes[26] !== 0 || bytes[27] !== 0 || (bytes[28] as number) > 1) return null;
  // Chunks after IHDR, up to the image data: each is length, type, data, CRC.
  for (let at = 33; ; ) {
    if (at + 8 > bytes.length) return null;
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString('latin1', at + 4, at + 8);
    if (type === 'IDAT') break;
    if (type === 'tRNS' || type === 'eXIf' || type === 'IEND') return null;
    at += 12 + length;
  }
  return {
    format: 'png',
    width,
    height,
    autoOrient: { width, height },
    depth: bitDepth === 16 ? 'ushort' : 'uchar',
    channels: channels as Metadata['channels'],
  };
}

function assertSize(info: { width: number; height: number; channels: number }, width: number, height: number, channels: number): void {
  if (info.width !== width || info.height !== height || (channels && info.channels !== channels)) {
    throw new Error(`decoder returned ${info.width}x${info.height}x${info.channels}, header said ${width}x${height}`);
  }
}
