import { ThoraxError } from '@thorax/contracts';
import { type DicomInfo, isSupportedTransferSyntax, parseDicomFile } from './dicom';
import { type MediaType, parseDeclaredMediaType, sniffMediaType } from './media-type';

/**
 * The cheap checks ingest makes before a record goes on: size, type (sniffed, and agreeing with
 * the declared content-type), and for DICOM the header only (parsing stops before Pixel Data):
 * transfer syntax and the clinical gates. Pixel-level limits are preprocess's.
 */
export interface IntakeOptions {
  maxBytes: number;
  maxInflatedBytes: number;
  dicomEnabled: boolean;
  /** Accepted Modality values (upper case); null accepts any, including a missing one. */
  modalities: readonly string[] | null;
  /** Accepted View Position values; null accepts any. */
  viewPositions: readonly string[] | null;
  /** Refuse a DICOM without View Position. */
  requireView: boolean;
  /** Accepted Body Part Examined values when present; null accepts any. */
  bodyParts: readonly string[] | null;
}

export const DEFAULT_INTAKE_OPTIONS: IntakeOptions = {
  maxBytes: 52_428_800,
  maxInflatedBytes: 268_435_456,
  dicomEnabled: true,
  modalities: ['CR', 'DX'],
  viewPositions: ['PA', 'AP'],
  requireView: false,
  bodyParts: ['CHEST', 'THORAX'],
};

export interface IntakeResult {
  contentType: MediaType;
  /** The DICOM header fields (identifiers included: never log them). */
  dicom: DicomInfo | null;
}

const stage = 'ingest' as const;

/** Declared type when it agrees with the bytes; sniffed type when none is declared. */
export function resolveMediaType(declaredHeader: string | undefined, data: Uint8Array): MediaType {
  const sniffed = sniffMediaType(data);
  const declared = parseDeclaredMediaType(declaredHeader);
  if (declared === 'other') {
    throw new ThoraxError('UNSUPPORTED_MEDIA_TYPE', `content-type ${declaredHeader} is not accepted`, { stage });
  }
  if (!sniffed) throw new ThoraxError('UNSUPPORTED_MEDIA_TYPE', 'bytes are not DICOM, PNG or JPEG', { stage });
  if (declared && declared !== sniffed) {
    throw new ThoraxError('CONTENT_TYPE_MISMATCH', `declared ${declared} but the bytes are ${sniffed}`, { stage });
  }
  return sniffed;
}

export function inspectStudy(data: Uint8Array | null, declaredContentType: string | undefined, options: IntakeOptions): IntakeResult {
  if (!data || data.length === 0) throw new ThoraxError('EMPTY_PAYLOAD', 'record has no bytes', { stage });
  if (data.length > options.maxBytes) {
    throw new ThoraxError('PAYLOAD_TOO_LARGE', `${data.length} bytes exceeds ${options.maxBytes}`, { stage });
  }
  const contentType = resolveMediaType(declaredContentType, data);
  if (contentType !== 'application/dicom') return { contentType, dicom: null };
  if (!options.dicomEnabled) throw new ThoraxError('DICOM_NOT_SUPPORTED', 'DICOM input is switched off (INGEST_DICOM_ENABLED)', { stage });
  const { info } = parseDicomFile(data, { maxInflatedBytes: options.maxInflatedBytes }, { untilPixelData: true, stage });
  if (!isSupportedTransferSyntax(info.transferSyntaxUid)) {
    throw new ThoraxError('UNSUPPORTED_TRANSFER_SYNTAX', `transfer syntax ${info.transferSyntaxUid} is not decoded`, { stage });
  }
  checkGates(info, options);
  return { contentType, dicom: info };
}

/** Clinical gates: modality, frontal view, chest. Messages name the value, never the patient. */
export function checkGates(info: Pick<DicomInfo, 'modality' | 'viewPosition' | 'bodyPartExamined'>, options: IntakeOptions): void {
  if (options.modalities && !options.modalities.includes(info.modality)) {
    throw new ThoraxError('UNSUPPORTED_MODALITY', `modality ${info.modality || '(missing)'} is not one of ${options.modalities.join(', ')}`, {
      stage,
    });
  }
  if (options.viewPositions) {
    if (!info.viewPosition && options.requireView) throw new ThoraxError('UNSUPPORTED_VIEW', 'view position is missing', { stage });
    if (info.viewPosition && !options.viewPositions.includes(info.viewPosition)) {
      throw new ThoraxError('UNSUPPORTED_VIEW', `view ${info.viewPosition} is not one of ${options.viewPositions.join(', ')}`, { stage });
    }
  }
  if (options.bodyParts && info.bodyPartExamined && !options.bodyParts.includes(info.bodyPartExamined)) {
    throw new ThoraxError('UNSUPPORTED_BODY_PART', `body part ${info.bodyPartExamined} is not one of ${options.bodyParts.join(', ')}`, {
      stage,
    });
  }
}
