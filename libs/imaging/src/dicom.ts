import { ThoraxError } from '@thorax/contracts';
import { type DataSet, type Element, parseDicom } from 'dicom-parser';
import { inflateRawSync } from 'node:zlib';

/** Transfer syntaxes, and which decoder handles each (docs/imaging.md lists them). */
export const TRANSFER_SYNTAXES = {
  '1.2.840.10008.1.2': { name: 'Implicit VR Little Endian', codec: 'native' },
  '1.2.840.10008.1.2.1': { name: 'Explicit VR Little Endian', codec: 'native' },
  '1.2.840.10008.1.2.1.99': { name: 'Deflated Explicit VR Little Endian', codec: 'native' },
  '1.2.840.10008.1.2.2': { name: 'Explicit VR Big Endian (retired)', codec: 'native' },
  '1.2.840.10008.1.2.4.50': { name: 'JPEG Baseline (Process 1)', codec: 'jpeg' },
  '1.2.840.10008.1.2.4.51': { name: 'JPEG Extended (Process 2 & 4), 8-bit samples', codec: 'jpeg' },
  '1.2.840.10008.1.2.4.57': { name: 'JPEG Lossless, Non-Hierarchical (Process 14)', codec: 'jpeg-lossless' },
  '1.2.840.10008.1.2.4.70': { name: 'JPEG Lossless, First-Order Prediction (Process 14, SV1)', codec: 'jpeg-lossless' },
  '1.2.840.10008.1.2.4.80': { name: 'JPEG-LS Lossless', codec: 'jpeg-ls' },
  '1.2.840.10008.1.2.4.81': { name: 'JPEG-LS Near-Lossless', codec: 'jpeg-ls' },
  '1.2.840.10008.1.2.4.90': { name: 'JPEG 2000 (Lossless Only)', codec: 'jpeg2000' },
  '1.2.840.10008.1.2.4.91': { name: 'JPEG 2000', codec: 'jpeg2000' },
  '1.2.840.10008.1.2.4.201': { name: 'High-Throughput JPEG 2000 (Lossless Only)', codec: 'htj2k' },
  '1.2.840.10008.1.2.4.202': { name: 'High-Throughput JPEG 2000 with RPCL Options (Lossless Only)', codec: 'htj2k' },
  '1.2.840.10008.1.2.4.203': { name: 'High-Throughput JPEG 2000', codec: 'htj2k' },
  '1.2.840.10008.1.2.5': { name: 'RLE Lossless', codec: 'rle' },
} as const;

export type TransferSyntaxUid = keyof typeof TRANSFER_SYNTAXES;
export type Codec = (typeof TRANSFER_SYNTAXES)[TransferSyntaxUid]['codec'];

const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

export function isSupportedTransferSyntax(uid: string): uid is TransferSyntaxUid {
  return Object.prototype.hasOwnProperty.call(TRANSFER_SYNTAXES, uid);
}

export interface DicomLimits {
  /** Largest dataset accepted after inflating a deflated transfer syntax, bytes. */
  maxInflatedBytes: number;
}

/** What Thorax reads from a DICOM header. Patient identifiers are here; never log this object. */
export interface DicomInfo {
  transferSyntaxUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  accessionNumber: string;
  patientId: string;
  modality: string;
  bodyPartExamined: string;
  viewPosition: string;
  photometricInterpretation: string;
  rows: number;
  columns: number;
  samplesPerPixel: number;
  planarConfiguration: number;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  pixelRepresentation: number;
  numberOfFrames: number;
  rescaleSlope: number;
  rescaleIntercept: number;
  windowCenter: number | null;
  windowWidth: number | null;
  voiLutFunction: string;
  hasVoiLut: boolean;
  hasModalityLut: boolean;
  hasPixelData: boolean;
}

/** A parsed dataset: the library's DataSet plus what Thorax reads from it. */
export interface ParsedDicom {
  info: DicomInfo;
  dataSet: DataSet;
}

const PIXEL_DATA = 'x7fe00010';

function corrupt(message: string, stage: 'ingest' | 'preprocess'): ThoraxError {
  return new ThoraxError('CORRUPT_IMAGE', message, { stage });
}

/**
 * Bytes as dicom-parser reads them: Part 10 files as they are; a File Meta group without the
 * 128-byte preamble gets one; a bare dataset (no File Meta) is read with the transfer syntax its
 * first element implies (explicit VR when bytes 4-5 spell a VR, else implicit).
 */
function normalise(bytes: Uint8Array): { bytes: Uint8Array; transferSyntax?: string } {
  if (bytes.length >= 132 && Buffer.from(bytes.buffer, bytes.byteOffset + 128, 4).toString('latin1') === 'DICM') return { bytes };
  if (bytes.length >= 8 && bytes[0] === 0x02 && bytes[1] === 0x00) {
    const withPreamble = new Uint8Array(132 + bytes.length);
    withPreamble.set([0x44, 0x49, 0x43, 0x4d], 128);
    withPreamble.set(bytes, 132);
    return { bytes: withPreamble };
  }
  const vr = bytes.length >= 6 ? String.fromCharCode(bytes[4] as number, bytes[5] as number) : '';
  return { bytes, transferSyntax: /^[A-Z]{2}$/.test(vr) ? EXPLICIT_LE : IMPLICIT_LE };
}

/**
 * Parses a DICOM file with dicom-parser. `untilPixelData` stops before (7FE0,0010), so ingest
 * reads the header without touching pixels. The deflate inflater is ours, with an explicit
 * output cap (the library's own would inflate without bound).
 */
export function parseDicomFile(
  bytes: Uint8Array,
  limits: DicomLimits,
  options: { untilPixelData: boolean; stage: 'ingest' | 'preprocess' },
): ParsedDicom {
  const { stage } = options;
  const input = normalise(bytes);
  let dataSet: DataSet;
  try {
    dataSet = parseDicom(input.bytes, {
      ...(input.transferSyntax ? { TransferSyntaxUID: input.transferSyntax } : {}),
      ...(options.untilPixelData ? { untilTag: PIXEL_DATA } : {}),
      inflater: (array: Uint8Array, position: number) => {
        let inflated: Buffer;
        try {
          inflated = inflateRawSync(array.subarray(position), { maxOutputLength: limits.maxInflatedBytes });
        } catch (error) {
          if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
            throw new ThoraxError('PAYLOAD_TOO_LARGE', `deflated dataset inflates beyond ${limits.maxInflatedBytes} bytes`, { stage });
          }
          throw corrupt(`deflated dataset does not inflate: ${(error as Error).message}`, stage);
        }
        const full = Buffer.alloc(position + inflated.length);
        full.set(array.subarray(0, position), 0);
        full.set(inflated, position);
        return full;
      },
    } as Parameters<typeof parseDicom>[1]);
  } catch (error) {
    throw classifyParseError(error, stage);
  }
  const info = readInfo(dataSet);
  if (!info.transferSyntaxUid) throw corrupt('no transfer syntax (0002,0010)', stage);
  return { info, dataSet };
}

function classifyParseError(error: unknown, stage: 'ingest' | 'preprocess'): ThoraxError {
  // dicom-parser throws strings, Errors, or { exception, dataSet } wrappers.
  const inner = (error as { exception?: unknown })?.exception ?? error;
  if (inner instanceof ThoraxError) return inner;
  if (error instanceof ThoraxError) return error;
  const message = inner instanceof Error ? inner.message : String(inner);
  return corrupt(`DICOM could not be parsed: ${message.slice(0, 300)}`, stage);
}

function str(ds: DataSet, tag: string): string {
  try {
    return (ds.string(tag) ?? '').trim();
  } catch {
    return '';
  }
}

function num(ds: DataSet, tag: string, read: 'uint16' | 'floatString' | 'intString', fallback: number): number {
  try {
    const value = ds[read](tag);
    return value === undefined || Number.isNaN(value) ? fallback : value;
  } catch {
    return fallback;
  }
}

function readInfo(ds: DataSet): DicomInfo {
  const pixel: Element | undefined = ds.elements[PIXEL_DATA];
  const windowCenter = num(ds, 'x00281050', 'floatString', Number.NaN);
  const windowWidth = num(ds, 'x00281051', 'floatString', Number.NaN);
  return {
    transferSyntaxUid: str(ds, 'x00020010').replace(/\0/g, ''),
    studyInstanceUid: str(ds, 'x0020000d'),
    seriesInstanceUid: str(ds, 'x0020000e'),
    sopInstanceUid: str(ds, 'x00080018'),
    accessionNumber: str(ds, 'x00080050'),
    patientId: str(ds, 'x00100020'),
    modality: str(ds, 'x00080060').toUpperCase(),
    bodyPartExamined: str(ds, 'x00180015').toUpperCase(),
    viewPosition: str(ds, 'x00185101').toUpperCase(),
    photometricInterpretation: str(ds, 'x00280004').toUpperCase(),
    rows: num(ds, 'x00280010', 'uint16', 0),
    columns: num(ds, 'x00280011', 'uint16', 0),
    samplesPerPixel: num(ds, 'x00280002', 'uint16', 1),
    planarConfiguration: num(ds, 'x00280006', 'uint16', 0),
    bitsAllocated: num(ds, 'x00280100', 'uint16', 0),
    bitsStored: num(ds, 'x00280101', 'uint16', 0),
    highBit: num(ds, 'x00280102', 'uint16', -1),
    pixelRepresentation: num(ds, 'x00280103', 'uint16', 0),
    numberOfFrames: Math.max(1, num(ds, 'x00280008', 'intString', 1)),
    rescaleSlope: num(ds, 'x00281053', 'floatString', 1),
    rescaleIntercept: num(ds, 'x00281052', 'floatString', 0),
    windowCenter: Number.isFinite(windowCenter) ? windowCenter : null,
    windowWidth: Number.isFinite(windowWidth) ? windowWidth : null,
    voiLutFunction: str(ds, 'x00281056').toUpperCase() || 'LINEAR',
    hasVoiLut: Boolean(ds.elements['x00283010']?.items?.length),
    hasModalityLut: Boolean(ds.elements['x00283000']?.items?.length),
    hasPixelData: pixel !== undefined,
  };
}
