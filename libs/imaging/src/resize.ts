/**
 * The wire resize (recipe `thorax.wire.v2`, docs/imaging.md): shorter side to `size` with
 * libvips' Lanczos-3 (`vips_resize`, through sharp), a centred square crop, 8-bit grey. The
 * trainer (apps/trainer/src/thorax_trainer/wire.py) calls the same libvips operations with the
 * same arguments through pyvips (the same libvips release as sharp's), so both sides produce the
 * same bytes. Nothing here loops over pixels in JavaScript.
 *
 * Two entry shapes, one geometry:
 *   - 8-bit grey PNG/JPEG: the decode, EXIF orientation, resize and crop run as one sharp
 *     pipeline on `uchar` samples (wire-image.ts; libvips' fixed-point uchar reducers).
 *   - any other grey plane (16-bit PNG, DICOM after modality/VOI, colour luma): a Float32Array of
 *     grey levels 0..255 goes in as raw float, is resized in float and rounded once at the end:
 *     `v + 0.5` (libvips linear), truncated into 16 bits (negative overshoot becomes 0), then
 *     clamped to 255.
 */
import sharp, { type Sharp } from 'sharp';

/** The libvips kernel of the wire resize. */
export const WIRE_KERNEL = 'lanczos3' as const;

/** Output size of the shorter-side resize: floor(x + 0.5) rounding, never below `size`. */
export function resizedSize(width: number, height: number, size: number): { width: number; height: number } {
  const scale = size / Math.min(width, height);
  return {
    width: Math.max(size, Math.floor(width * scale + 0.5)),
    height: Math.max(size, Math.floor(height * scale + 0.5)),
  };
}

/** Where the resize lands and which `size` x `size` window of it is kept (centred, floor). */
export interface WireGeometry {
  width: number;
  height: number;
  left: number;
  top: number;
}

export function wireGeometry(width: number, height: number, size: number): WireGeometry {
  const target = resizedSize(width, height, size);
  return { ...target, left: Math.floor((target.width - size) / 2), top: Math.floor((target.height - size) / 2) };
}

/**
 * Adds the wire resize and crop to a sharp pipeline whose (oriented) image is `width` x
 * `height`. sharp turns `fit: 'fill'` into `vips_resize(scale = 1 / (width / target.width),
 * vscale = 1 / (height / target.height), kernel = lanczos3)` with libvips' default reducing gap
 * of 2 (an integer box shrink first when the factor is 4 or more); `fastShrinkOnLoad: false`
 * and the callers' pinned pipeline colourspace keep libjpeg's DCT shrink-on-load out.
 */
export function withWireResize(pipeline: Sharp, width: number, height: number, size: number): Sharp {
  const g = wireGeometry(width, height, size);
  return pipeline
    .resize(g.width, g.height, { kernel: WIRE_KERNEL, fit: 'fill', fastShrinkOnLoad: false })
    .extract({ left: g.left, top: g.top, width: size, height: size });
}

/**
 * A float grey plane (row-major, grey levels nominally 0..255) to the wire image. sharp reads a
 * one-channel Float32Array as a float image it labels grey16, resizes it in float, adds 0.5
 * (`linear`), casts to 16 bits on output (a grey16 image is always written as ushort: truncation,
 * negatives to 0) and to 8 bits for the raw bytes (clamped to 255): floor(v + 0.5) clamped.
 */
export async function resizeGreyPlane(plane: Float32Array, width: number, height: number, size: number, timeoutSeconds: number): Promise<Uint8Array> {
  const { data, info } = await withWireResize(
    sharp(plane, { raw: { width, height, channels: 1 }, limitInputPixels: false }).timeout({ seconds: timeoutSeconds }),
    width,
    height,
    size,
  )
    .linear(1, 0.5)
    .toColourspace('grey16')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 1) {
    throw new Error(`wire resize returned ${info.width}x${info.height}x${info.channels}`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Largest grey plane (in pixels; 64 MiB of float32) a thread keeps for its next image. */
export const SPARE_PLANE_MAX_PIXELS = 16_777_216;
let sparePlane: Float32Array | null = null;

/**
 * Runs `use` with a float grey plane of `pixels` levels and takes the plane back when it
 * settles (sharp has finished reading it by then). One plane per thread is kept for the next
 * image: a fresh 20 MB Float32Array costs about as much CPU as the lookups that fill it (zeroed
 * pages, faulted in one by one, and the garbage collection its external memory triggers). A
 * plane in use is never handed out twice; images decoded at the same time on one thread get
 * fresh planes. `use` must write every element (the plane holds the previous image's levels).
 */
export async function withGreyPlane<T>(pixels: number, use: (plane: Float32Array) => Promise<T>): Promise<T> {
  let held: Float32Array;
  if (sparePlane && sparePlane.length >= pixels) {
    held = sparePlane;
    sparePlane = null;
  } else {
    held = new Float32Array(pixels);
  }
  try {
    return await use(held.length === pixels ? held : held.subarray(0, pixels));
  } finally {
    if (held.length <= SPARE_PLANE_MAX_PIXELS && (!sparePlane || sparePlane.length < held.length)) sparePlane = held;
  }
}
