import { monochromeToGrey, type MonochromeTransform } from './grey-levels';
import { withGreyPlane } from './resize';

/** Stored values as the DICOM standard defines them: masked to Bits Stored, sign-extended. */
function stored(words: Uint8Array | Uint16Array, bitsStored: number, signed: boolean): Int32Array {
  const out = new Int32Array(words.length);
  for (let i = 0; i < words.length; i += 1) {
    const v = (words[i] as number) & (2 ** bitsStored - 1);
    out[i] = signed && v >= 2 ** (bitsStored - 1) ? v - 2 ** bitsStored : v;
  }
  return out;
}

function words16(n: number, seed: number): Uint16Array {
  const out = new Uint16Array(n);
  let s = seed;
  for (let i = 0; i < n; i += 1) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    out[i] = s & 0xffff;
  }
  return out;
}

const transforms: Record<string, MonochromeTransform> = {
  window: { slope: 1, intercept: 0, invert: false, window: { center: 300, width: 900, fn: 'LINEAR' } },
  'window, rescaled, inverted': { slope: 0.5, intercept: -100, invert: true, window: { center: 50, width: 400, fn: 'LINEAR_EXACT' } },
  sigmoid: { slope: 1, intercept: 0, invert: false, window: { center: 0, width: 1000, fn: 'SIGMOID' } },
  percentiles: { slope: 2, intercept: 7, invert: false },
  'VOI LUT': { slope: 1, intercept: 0, invert: false, voiLut: { firstMapped: -50, bits: 12, data: Uint16Array.from({ length: 600 }, (_, k) => (k * 7) % 4096) } },
};

describe('monochromeToGrey on raw words (masking and sign extension folded into the table)', () => {
  for (const [name, t] of Object.entries(transforms)) {
    for (const [bitsStored, signed] of [
      [12, false],
      [12, true],
      [16, false],
      [16, true],
      [10, true],
    ] as const) {
      it(`${name}, ${bitsStored} bits stored, ${signed ? 'signed' : 'unsigned'}: the same levels as from stored values`, () => {
        // Random 16-bit words: most have bits set above Bits Stored.
        const raw = words16(20_000, bitsStored * 31 + (signed ? 1 : 0));
        const expected = monochromeToGrey({ values: stored(raw, bitsStored, signed), bitsStored, signed }, t);
        const got = monochromeToGrey({ values: raw, bitsStored, signed, raw: true }, t);
        expect(got.voi).toBe(expected.voi);
        expect(Buffer.from(got.grey.buffer).equals(Buffer.from(expected.grey.buffer))).toBe(true);
      });
    }
  }

  it('8-bit words with 6 bits stored, signed, robust percentiles', () => {
    const raw = Uint8Array.from(words16(5_000, 3), (w) => w & 0xff);
    const t = transforms['percentiles'] as MonochromeTransform;
    const expected = monochromeToGrey({ values: stored(raw, 6, true), bitsStored: 6, signed: true }, t);
    const got = monochromeToGrey({ values: raw, bitsStored: 6, signed: true, raw: true }, t);
    expect(got.voi).toBe('percentiles');
    expect(Array.from(got.grey)).toEqual(Array.from(expected.grey));
  });

  it('writes into a given plane, and refuses one of the wrong length', () => {
    const raw = words16(1_000, 9);
    const into = new Float32Array(1_000).fill(Number.NaN);
    const { grey } = monochromeToGrey({ values: raw, bitsStored: 12, signed: false, raw: true }, transforms['window'] as MonochromeTransform, into);
    expect(grey).toBe(into);
    expect(into.every((v) => v >= 0 && v <= 255)).toBe(true);
    expect(() => monochromeToGrey({ values: raw, bitsStored: 12, signed: false, raw: true }, transforms['window'] as MonochromeTransform, new Float32Array(999))).toThrow(RangeError);
  });

  it('refuses raw words that are not 8- or 16-bit unsigned', () => {
    expect(() => monochromeToGrey({ values: new Int32Array(4), bitsStored: 12, signed: false, raw: true }, transforms['window'] as MonochromeTransform)).toThrow(TypeError);
  });
});

describe('withGreyPlane', () => {
  it('hands a settled plane to the next image and never one still in use', async () => {
    const used: ArrayBufferLike[] = [];
    await withGreyPlane(100, async (plane) => {
      used.push(plane.buffer);
      expect(plane.length).toBe(100);
      // A second image on the same thread while the first holds its plane: a different plane.
      await withGreyPlane(100, async (other) => {
        used.push(other.buffer);
        expect(other.buffer).not.toBe(plane.buffer);
      });
    });
    // Both settled: the next image of at most that size reuses a kept plane, cut to its length.
    await withGreyPlane(60, async (plane) => {
      expect(plane.length).toBe(60);
      expect(used).toContain(plane.buffer);
    });
  });

  it('takes the plane back when the work fails', async () => {
    let used: ArrayBufferLike | undefined;
    await expect(
      withGreyPlane(50, async (plane) => {
        used = plane.buffer;
        throw new Error('decode failed');
      }),
    ).rejects.toThrow('decode failed');
    await withGreyPlane(50, async (plane) => expect(plane.buffer).toBe(used));
  });
});
