import { ThoraxError } from '@thorax/contracts';
import sharp, { type Metadata } from 'sharp';

/** Name of the wire recipe below; carried in every PreprocessedImage. */
export const WIRE_PREPROCESSING = 'thorax.wire.v1';

export interface WireImageOptions {
  /** Side of the square wire image (DESIGN.md default 256). */
  size: number;
  /** Largest accepted input in pixels (width * height), a decompression-bomb guard. */
  maxInputPixels: number;
  /** Smallest accepted shorter side, in pixels. */
  minInputSide: number;
}

export const DEFAULT_WIRE_OPTIONS: WireImageOptions = { size: 256, maxInputPixels: 50_000_000, minInputSide: 64 };

export interface WireImage {
  /** size * size bytes, 8-bit grey, row-major. */
  pixels: Buffer;
  width: number;
  height: number;
  source: { width: number; height: number; bitsStored: number; channels: number; format: string };
}

/**
 * PNG or JPEG bytes to the wire image: EXIF orientation applied, alpha flattened on black, grey
 * (Rec. 709 luma), shorter side resized to `size` with a Lanczos-3 kernel, centre-cropped square,
 * 8 bits. Decoder warnings fail the image (untrusted input).
 */
export async function toWireImage(bytes: Buffer, options: WireImageOptions = DEFAULT_WIRE_OPTIONS): Promise<WireImage> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { failOn: 'warning', limitInputPixels: false }).metadata();
  } catch (error) {
    throw new ThoraxError('CORRUPT_IMAGE', `unreadable image header: ${(error as Error).message}`, { stage: 'preprocess' });
  }
  if (meta.format !== 'png' && meta.format !== 'jpeg') {
    throw new ThoraxError('UNSUPPORTED_MEDIA_TYPE', `decoder found ${meta.format ?? 'unknown'} data`, { stage: 'preprocess' });
  }
  const width = meta.autoOrient?.width ?? meta.width ?? 0;
  const height = meta.autoOrient?.height ?? meta.height ?? 0;
  if (width * height > options.maxInputPixels) {
    throw new ThoraxError('IMAGE_TOO_LARGE', `${width}x${height} exceeds ${options.maxInputPixels} pixels`, { stage: 'preprocess' });
  }
  if (Math.min(width, height) < options.minInputSide) {
    throw new ThoraxError('IMAGE_TOO_SMALL', `${width}x${height} is below ${options.minInputSide} px`, { stage: 'preprocess' });
  }
  try {
    const { data, info } = await sharp(bytes, { failOn: 'warning', limitInputPixels: options.maxInputPixels })
      .autoOrient()
      .flatten({ background: '#000000' })
      .greyscale()
      .resize(options.size, options.size, { fit: 'cover', position: 'centre', kernel: 'lanczos3' })
      .extractChannel(0)
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.width !== options.size || info.height !== options.size || data.length !== options.size * options.size) {
      throw new Error(`decoder returned ${info.width}x${info.height}x${info.channels}`);
    }
    const bitsStored = meta.depth === 'ushort' || meta.depth === 'short' ? 16 : 8;
    return {
      pixels: data,
      width: info.width,
      height: info.height,
      source: { width, height, bitsStored, channels: meta.channels ?? 1, format: meta.format },
    };
  } catch (error) {
    if (error instanceof ThoraxError) throw error;
    throw new ThoraxError('CORRUPT_IMAGE', `image could not be decoded: ${(error as Error).message}`, { stage: 'preprocess' });
  }
}
