/**
 * The wire resize: shorter side to `size` with a Lanczos-3 kernel, centre crop to a square,
 * rounded to 8 bits. Written out by hand (not left to an image library) so that the trainer's
 * Python copy (apps/trainer/src/thorax_trainer/wire.py) performs the same floating-point
 * operations in the same order and both sides produce the same bytes; docs/imaging.md states
 * the recipe. The filter geometry follows the usual convolution-resampler convention: output
 * pixel i samples the input around (i + 0.5) * scale, the kernel is stretched by the scale when
 * shrinking, and the weights of each output pixel are normalised to sum to one.
 */

/** Lanczos-3 window: sinc(x) * sinc(x / 3) on [-3, 3). */
function lanczos3(x: number): number {
  if (x < -3 || x >= 3) return 0;
  return sinc(x) * sinc(x / 3);
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

/** Output size of the shorter-side resize: floor(x + 0.5) rounding, never below `size`. */
export function resizedSize(width: number, height: number, size: number): { width: number; height: number } {
  const scale = size / Math.min(width, height);
  return {
    width: Math.max(size, Math.floor(width * scale + 0.5)),
    height: Math.max(size, Math.floor(height * scale + 0.5)),
  };
}

interface Taps {
  /** First input index of each output position. */
  start: Int32Array;
  /** Number of (contiguous) inputs of each output position. */
  count: Int32Array;
  /** count * taps weights, row per output position. */
  weight: Float64Array;
  taps: number;
}

/**
 * Filter taps for output positions [first, first + count) of a resize from `inSize` to
 * `outSize` samples along one axis.
 */
function axisTaps(inSize: number, outSize: number, first: number, outputs: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 3 * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outputs);
  const count = new Int32Array(outputs);
  const weight = new Float64Array(outputs * taps);
  for (let o = 0; o < outputs; o += 1) {
    const center = (first + o + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    let total = 0;
    let n = 0;
    for (let x = lo; x < hi && n < taps; x += 1, n += 1) {
      const w = lanczos3((x - center + 0.5) / filterScale);
      weight[o * taps + n] = w;
      total += w;
    }
    start[o] = lo;
    count[o] = n;
    if (total !== 0) for (let t = 0; t < n; t += 1) weight[o * taps + t] = (weight[o * taps + t] as number) / total;
  }
  return { start, count, weight, taps };
}

/**
 * Resizes a float plane (row-major, values nominally 0..255) so that its shorter side is `size`
 * and returns the centred `size` x `size` crop as 8-bit grey: each value rounded with
 * floor(v + 0.5) and clamped to [0, 255]. Horizontal pass first, then vertical; each output is a
 * sum over its taps in index order.
 */
export function resizeCropToGrey8(plane: Float64Array, width: number, height: number, size: number): Uint8Array {
  const target = resizedSize(width, height, size);
  const left = Math.floor((target.width - size) / 2);
  const top = Math.floor((target.height - size) / 2);
  const out = new Uint8Array(size * size);
  // Horizontal: every input row, only the `size` output columns inside the crop.
  let horizontal: Float64Array;
  if (target.width === width) {
    horizontal = new Float64Array(height * size);
    for (let y = 0; y < height; y += 1) horizontal.set(plane.subarray(y * width + left, y * width + left + size), y * size);
  } else {
    const { start, count, weight, taps } = axisTaps(width, target.width, left, size);
    horizontal = new Float64Array(height * size);
    for (let y = 0; y < height; y += 1) {
      const row = y * width;
      for (let o = 0; o < size; o += 1) {
        let sum = 0;
        const base = o * taps;
        const from = row + (start[o] as number);
        const n = count[o] as number;
        for (let t = 0; t < n; t += 1) sum += (weight[base + t] as number) * (plane[from + t] as number);
        horizontal[y * size + o] = sum;
      }
    }
  }
  // Vertical: the `size` output rows inside the crop.
  if (target.height === height) {
    for (let o = 0; o < size; o += 1) {
      for (let x = 0; x < size; x += 1) out[o * size + x] = toByte(horizontal[(top + o) * size + x] as number);
    }
    return out;
  }
  const { start, count, weight, taps } = axisTaps(height, target.height, top, size);
  const column = new Float64Array(size);
  for (let o = 0; o < size; o += 1) {
    column.fill(0);
    const base = o * taps;
    const n = count[o] as number;
    for (let t = 0; t < n; t += 1) {
      const w = weight[base + t] as number;
      const row = ((start[o] as number) + t) * size;
      for (let x = 0; x < size; x += 1) column[x] = (column[x] as number) + w * (horizontal[row + x] as number);
    }
    for (let x = 0; x < size; x += 1) out[o * size + x] = toByte(column[x] as number);
  }
  return out;
}

function toByte(v: number): number {
  const r = Math.floor(v + 0.5);
  return r < 0 ? 0 : r > 255 ? 255 : r;
}
