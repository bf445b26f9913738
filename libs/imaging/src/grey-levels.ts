/**
 * Decoded samples to display grey levels (a Float32Array plane, nominally 0..255), before the
 * wire resize. Each level is computed in double precision and stored once as float32 (24-bit
 * mantissa: far finer than the 8-bit result, and what libvips resizes in). Every step is spelled out so that the trainer's Python copy (wire.py, dicom.py)
 * performs the same arithmetic; docs/imaging.md is the prose version.
 *
 *   monochrome: stored value → modality (LUT, or slope × v + intercept) → VOI (LUT, else window,
 *               else robust min/max = the 0.5th and 99.5th percentiles) → 0..255 → MONOCHROME1
 *               inverted;
 *   colour:     (299 R + 587 G + 114 B) / 1000, scaled from 0..2^bits-1 to 0..255;
 *   alpha:      flattened on black (c × a / max) before anything else.
 */

/** Lower and upper percentiles of the robust min/max used when an image carries no VOI. */
export const ROBUST_PERCENTILES = [0.5, 99.5] as const;

export interface Lut {
  /** Stored value mapped to entry 0. */
  firstMapped: number;
  /** Bits per entry (from the LUT descriptor). */
  bits: number;
  data: Uint16Array | Int16Array;
}

export type VoiLutFunction = 'LINEAR' | 'LINEAR_EXACT' | 'SIGMOID';

export interface MonochromeTransform {
  /** Modality LUT (takes precedence over rescale) or rescale slope and intercept. */
  modalityLut?: Lut;
  slope: number;
  intercept: number;
  /** VOI LUT (takes precedence over the window). */
  voiLut?: Lut;
  window?: { center: number; width: number; fn: VoiLutFunction };
  invert: boolean;
}

export type VoiUsed = 'lut' | 'window' | 'percentiles' | 'none';

/** Stored values of one monochrome frame, already masked to Bits Stored (sign-extended when signed). */
export interface MonochromeFrame {
  /** Any integer typed array: a 16-bit PNG's samples are used without a copy. */
  values: Int32Array | Int16Array | Uint16Array | Uint8Array;
  /** 2^bits distinct stored values at most: a histogram over [minValue, minValue + 2^bits). */
  bitsStored: number;
  signed: boolean;
}

function lookUp(lut: Lut, v: number): number {
  let i = Math.floor(v) - lut.firstMapped;
  if (i < 0) i = 0;
  if (i > lut.data.length - 1) i = lut.data.length - 1;
  return lut.data[i] as number;
}

function modality(t: MonochromeTransform, v: number): number {
  return t.modalityLut ? lookUp(t.modalityLut, v) : v * t.slope + t.intercept;
}

/** Whether a window of this function and width can be applied (DICOM: width ≥ 1, > 0 for LINEAR_EXACT). */
export function usableWindow(center: number, width: number, fn: VoiLutFunction): boolean {
  if (!Number.isFinite(center) || !Number.isFinite(width)) return false;
  return fn === 'LINEAR_EXACT' ? width > 0 : width >= 1;
}

/** DICOM PS3.3 C.11.2.1.2 window functions onto 0..255 (continuous, not rounded). */
export function applyWindow(x: number, center: number, width: number, fn: VoiLutFunction): number {
  if (fn === 'SIGMOID') return 255 / (1 + Math.exp((-4 * (x - center)) / width));
  if (fn === 'LINEAR_EXACT') return clamp255(((x - center) / width + 0.5) * 255);
  if (x <= center - 0.5 - (width - 1) / 2) return 0;
  if (x > center - 0.5 + (width - 1) / 2) return 255;
  return ((x - (center - 0.5)) / (width - 1) + 0.5) * 255;
}

function clamp255(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Linear-interpolation percentile (q in 0..100) of the modality values of a frame, computed
 * from a histogram of its stored values: rank position q * (n - 1) / 100, then
 * a[k] + (a[k + 1] - a[k]) * (pos - k) over the sorted values.
 */
function percentiles(frame: MonochromeFrame, t: MonochromeTransform, qs: readonly number[]): number[] {
  const offset = frame.signed ? 2 ** (frame.bitsStored - 1) : 0;
  const bins = new Uint32Array(2 ** frame.bitsStored);
  const values = frame.values;
  for (let i = 0; i < values.length; i += 1) bins[(values[i] as number) + offset] = (bins[(values[i] as number) + offset] as number) + 1;
  // Distinct stored values ordered by their modality value (a modality LUT need not be monotonic).
  const present: { m: number; count: number }[] = [];
  for (let b = 0; b < bins.length; b += 1) if (bins[b]) present.push({ m: modality(t, b - offset), count: bins[b] as number });
  present.sort((a, b) => a.m - b.m);
  const n = values.length;
  const at = (rank: number): number => {
    let seen = 0;
    for (const p of present) {
      seen += p.count;
      if (rank < seen) return p.m;
    }
    return (present[present.length - 1] as { m: number }).m;
  };
  return qs.map((q) => {
    const pos = (q * (n - 1)) / 100;
    const k = Math.floor(pos);
    const a = at(k);
    if (k + 1 >= n) return a;
    return a + (at(k + 1) - a) * (pos - k);
  });
}

/** Monochrome stored values to display grey levels (0..255 floats), and which VOI was used. */
export function monochromeToGrey(frame: MonochromeFrame, t: MonochromeTransform): { grey: Float32Array; voi: VoiUsed } {
  // Stored values are integers of at most 16 bits: compute the grey level once per possible
  // value (the same formula as per pixel, so the same floats) and look pixels up.
  const offset = frame.signed ? 2 ** (frame.bitsStored - 1) : 0;
  const size = 2 ** frame.bitsStored;
  const table = new Float64Array(size);
  let voi: VoiUsed;
  if (t.voiLut) {
    const lut = t.voiLut;
    const top = 2 ** lut.bits - 1;
    for (let b = 0; b < size; b += 1) table[b] = (lookUp(lut, modality(t, b - offset)) * 255) / top;
    voi = 'lut';
  } else if (t.window) {
    const { center, width, fn } = t.window;
    for (let b = 0; b < size; b += 1) table[b] = applyWindow(modality(t, b - offset), center, width, fn);
    voi = 'window';
  } else {
    let [lo, hi] = percentiles(frame, t, ROBUST_PERCENTILES) as [number, number];
    if (!(hi > lo)) [lo, hi] = percentiles(frame, t, [0, 100]) as [number, number];
    if (hi > lo) {
      for (let b = 0; b < size; b += 1) table[b] = clamp255(((modality(t, b - offset) - lo) / (hi - lo)) * 255);
      voi = 'percentiles';
    } else {
      voi = 'none';
    }
  }
  if (t.invert) for (let b = 0; b < size; b += 1) table[b] = 255 - (table[b] as number);
  const values = frame.values;
  const n = values.length;
  const levels = Float32Array.from(table);
  const grey = new Float32Array(n);
  for (let i = 0; i < n; i += 1) grey[i] = levels[(values[i] as number) + offset] as number;
  return { grey, voi };
}

/**
 * Interleaved samples (1 grey or 3 colour channels, optionally followed by alpha) to display
 * grey levels: alpha flattened on black, colour to luma (299, 587, 114 per mille), scaled from
 * 0..maxValue to 0..255.
 */
export function samplesToGrey(
  samples: ArrayLike<number>,
  pixels: number,
  channels: number,
  maxValue: number,
  alpha: boolean,
): Float32Array {
  const grey = new Float32Array(pixels);
  const colour = channels - (alpha ? 1 : 0) >= 3;
  for (let i = 0; i < pixels; i += 1) {
    const base = i * channels;
    let g: number;
    if (colour) {
      let r = samples[base] as number;
      let gg = samples[base + 1] as number;
      let b = samples[base + 2] as number;
      if (alpha) {
        const a = samples[base + 3] as number;
        r = (r * a) / maxValue;
        gg = (gg * a) / maxValue;
        b = (b * a) / maxValue;
      }
      g = (299 * r + 587 * gg + 114 * b) / 1000;
    } else {
      g = samples[base] as number;
      if (alpha) g = (g * (samples[base + 1] as number)) / maxValue;
    }
    grey[i] = maxValue === 255 ? g : (g * 255) / maxValue;
  }
  return grey;
}
