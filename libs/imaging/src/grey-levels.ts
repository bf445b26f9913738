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

/**
 * One monochrome frame. `values` are either its stored values, already masked to Bits Stored
 * (sign-extended when signed), or, with `raw` set, the frame's samples as decoded: a Uint8Array
 * or Uint16Array of words whose bits above Bits Stored may be set, masked and sign-extended here
 * through the lookup table (no pass over the pixels for it, no copy).
 */
export interface MonochromeFrame {
  /** Any integer typed array: a 16-bit PNG's samples are used without a copy. */
  values: Int32Array | Int16Array | Uint16Array | Uint8Array;
  /** 2^bits distinct stored values at most: a histogram over [minValue, minValue + 2^bits). */
  bitsStored: number;
  signed: boolean;
  /** `values` are raw 8- or 16-bit words (a Uint8Array or Uint16Array), not stored values. */
  raw?: boolean;
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
  const bins = histogram(frame);
  // Distinct stored values ordered by their modality value (a modality LUT need not be monotonic).
  const present: { m: number; count: number }[] = [];
  for (let b = 0; b < bins.length; b += 1) if (bins[b]) present.push({ m: modality(t, b - offset), count: bins[b] as number });
  present.sort((a, b) => a.m - b.m);
  const n = frame.values.length;
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

/**
 * Monochrome stored values to display grey levels (0..255 floats), and which VOI was used.
 * `into`, when given, receives the levels (one per value; every element is written).
 */
export function monochromeToGrey(frame: MonochromeFrame, t: MonochromeTransform, into?: Float32Array): { grey: Float32Array; voi: VoiUsed } {
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
  const grey = plane(into, frame.values.length);
  if (frame.raw) {
    const words = rawWords(frame);
    mapWords(words, wordTable(table, frame.bitsStored, frame.signed, words.BYTES_PER_ELEMENT * 8), grey);
  } else {
    mapStored(frame.values, Float32Array.from(table), offset, grey);
  }
  return { grey, voi };
}

function plane(into: Float32Array | undefined, length: number): Float32Array {
  if (!into) return new Float32Array(length);
  if (into.length !== length) throw new RangeError(`grey plane holds ${into.length} levels, the image has ${length}`);
  return into;
}

/** Stored value of a raw word: masked to Bits Stored, sign-extended when signed. */
function storedOf(word: number, bitsStored: number, signed: boolean): number {
  const v = word & (2 ** bitsStored - 1);
  return signed && v >= 2 ** (bitsStored - 1) ? v - 2 ** bitsStored : v;
}

function rawWords(frame: MonochromeFrame): Uint8Array | Uint16Array {
  const values = frame.values;
  if (values instanceof Uint8Array || values instanceof Uint16Array) return values;
  throw new TypeError('raw monochrome samples must be a Uint8Array or a Uint16Array');
}

/** The per-stored-value table re-indexed by raw word (2^container entries), as float32. */
function wordTable(table: Float64Array, bitsStored: number, signed: boolean, container: number): Float32Array {
  const offset = signed ? 2 ** (bitsStored - 1) : 0;
  const words = new Float32Array(2 ** container);
  for (let w = 0; w < words.length; w += 1) words[w] = table[storedOf(w, bitsStored, signed) + offset] as number;
  return words;
}

/** Histogram over stored values (index: value + offset), from stored values or from raw words. */
function histogram(frame: MonochromeFrame): Uint32Array {
  const bins = new Uint32Array(2 ** frame.bitsStored);
  const offset = frame.signed ? 2 ** (frame.bitsStored - 1) : 0;
  const values = frame.values;
  if (!frame.raw) {
    for (let i = 0; i < values.length; i += 1) bins[(values[i] as number) + offset] = (bins[(values[i] as number) + offset] as number) + 1;
    return bins;
  }
  const raw = rawWords(frame);
  const words = new Uint32Array(2 ** (raw.BYTES_PER_ELEMENT * 8));
  if (raw instanceof Uint16Array) for (let i = 0; i < raw.length; i += 1) words[raw[i] as number] = (words[raw[i] as number] as number) + 1;
  else for (let i = 0; i < raw.length; i += 1) words[raw[i] as number] = (words[raw[i] as number] as number) + 1;
  for (let w = 0; w < words.length; w += 1) {
    const k = storedOf(w, frame.bitsStored, frame.signed) + offset;
    bins[k] = (bins[k] as number) + (words[w] as number);
  }
  return bins;
}

/*
 * The per-pixel lookups, one loop per array type: each indexed load then sees a single kind of
 * typed array (a load shared by several kinds is several times slower in V8).
 */
function mapWords(values: Uint8Array | Uint16Array, levels: Float32Array, grey: Float32Array): void {
  const n = grey.length;
  if (values instanceof Uint16Array) for (let i = 0; i < n; i += 1) grey[i] = levels[values[i] as number] as number;
  else for (let i = 0; i < n; i += 1) grey[i] = levels[values[i] as number] as number;
}

function mapStored(values: MonochromeFrame['values'], levels: Float32Array, offset: number, grey: Float32Array): void {
  const n = grey.length;
  if (values instanceof Uint16Array) for (let i = 0; i < n; i += 1) grey[i] = levels[(values[i] as number) + offset] as number;
  else if (values instanceof Uint8Array) for (let i = 0; i < n; i += 1) grey[i] = levels[(values[i] as number) + offset] as number;
  else if (values instanceof Int16Array) for (let i = 0; i < n; i += 1) grey[i] = levels[(values[i] as number) + offset] as number;
  else for (let i = 0; i < n; i += 1) grey[i] = levels[(values[i] as number) + offset] as number;
}

/**
 * Interleaved samples (1 grey or 3 colour channels, optionally followed by alpha) to display
 * grey levels: alpha flattened on black, colour to luma (299, 587, 114 per mille), scaled from
 * 0..maxValue to 0..255 (into `into` when given).
 */
export function samplesToGrey(
  samples: ArrayLike<number>,
  pixels: number,
  channels: number,
  maxValue: number,
  alpha: boolean,
  into?: Float32Array,
): Float32Array {
  const grey = plane(into, pixels);
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
