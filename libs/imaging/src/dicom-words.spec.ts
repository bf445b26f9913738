/**
 * Uncompressed 16-bit frames are read in place in the file's bytes when they can be (little
 * endian, even offset) and copied otherwise: every way in gives the same wire image.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { toWireImage } from './wire-image';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures/imaging/valid');

/** The file's bytes starting at an odd offset of a larger buffer. */
function atOddOffset(bytes: Uint8Array): Uint8Array {
  const holder = new Uint8Array(bytes.length + 3);
  holder.set(bytes, 1);
  return holder.subarray(1, 1 + bytes.length);
}

describe('uncompressed 16-bit DICOM words', () => {
  for (const file of ['mono2-explicit-le-window.dcm', 'mono2-big-endian.dcm', 'signed16-rescale-linear-exact.dcm', 'mono1-explicit-le.dcm']) {
    it(`${file}: the same wire image from its bytes at an even and at an odd offset, and the file left as it was`, async () => {
      const bytes = new Uint8Array(readFileSync(path.join(FIXTURES, file)));
      const before = Buffer.from(bytes);
      const even = await toWireImage(bytes);
      const odd = await toWireImage(atOddOffset(bytes));
      expect(even.source.bitsStored).toBeGreaterThan(8);
      expect(Buffer.from(odd.pixels).equals(Buffer.from(even.pixels))).toBe(true);
      expect(odd.source).toEqual(even.source);
      expect(Buffer.from(bytes).equals(before)).toBe(true);
      // A second decode on this thread reuses the kept float plane: the same bytes again.
      expect(Buffer.from((await toWireImage(bytes)).pixels).equals(Buffer.from(even.pixels))).toBe(true);
    });
  }
});
