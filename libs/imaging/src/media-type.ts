export const MEDIA_TYPES = ['application/dicom', 'image/png', 'image/jpeg'] as const;
export type MediaType = (typeof MEDIA_TYPES)[number];

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Identifies DICOM, PNG or JPEG from the leading bytes; null for anything else. Only these three
 * reach a decoder: the image library also reads SVG, TIFF, GIF, WebP and HEIF, which the
 * contract does not accept.
 */
export function sniffMediaType(bytes: Uint8Array): MediaType | null {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length >= 8 && b.subarray(0, 8).equals(PNG_SIGNATURE)) return 'image/png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
  if (b.length >= 132 && b.toString('latin1', 128, 132) === 'DICM') return 'application/dicom';
  // A DICOM dataset without the preamble starts with a group 0x0002 or 0x0008 element.
  if (b.length >= 8 && b[1] === 0x00 && (b[0] === 0x02 || b[0] === 0x08) && b[3] === 0x00) return 'application/dicom';
  return null;
}

/** Normalises a declared content-type header; null when absent or uninformative. */
export function parseDeclaredMediaType(header: string | undefined): MediaType | 'other' | null {
  if (!header) return null;
  const base = (header.split(';')[0] ?? '').trim().toLowerCase();
  if (base === '' || base === 'application/octet-stream') return null;
  if (base === 'image/jpg') return 'image/jpeg';
  return (MEDIA_TYPES as readonly string[]).includes(base) ? (base as MediaType) : 'other';
}
