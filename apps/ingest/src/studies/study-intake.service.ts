import { Inject, Injectable } from '@nestjs/common';
import { HEADERS, ImageAccepted, Priority, Source, type StudyRef, ThoraxError } from '@thorax/contracts';
import { type DicomInfo, type IntakeOptions, inspectStudy, parseDicomFile, sniffMediaType } from '@thorax/imaging';
import { asBuffer, PUBLISHER, type Publisher } from '@thorax/kafka';
import { createHash } from 'node:crypto';
import { INGEST_CONFIG, type IngestConfig } from '../config';

/** One raw study as a PACS sent it: the image id (the record key), the file, the PACS headers. */
export interface StudyUpload {
  id: string | null;
  data: Buffer;
  headers: Record<string, string>;
}

/**
 * Admits one raw study: checks it is a file type the contract accepts, reads a DICOM
 * header (never its pixels) for the transfer syntax, the clinical gates and the study
 * identifiers (DICOM tags win over PACS headers), stamps the receipt time and hands it to
 * preprocess on thorax.images.v1. Pixel decoding happens in preprocess.
 */
@Injectable()
export class StudyIntakeService {
  private readonly intake: IntakeOptions;

  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
  ) {
    this.intake = intakeOptions(config);
  }

  /** `forward`: the headers that follow the study downstream (trace context). */
  async admit(upload: StudyUpload, receivedAt: Date, forward: Record<string, string>): Promise<ImageAccepted> {
    const { id, data, headers } = upload;
    if (!id) throw new ThoraxError('MISSING_KEY', 'record key (image id) is empty', { stage: 'ingest' });
    const { contentType, dicom } = inspectStudy(data, headers[HEADERS.contentType], this.intake);
    const accepted: ImageAccepted = {
      id,
      contentType,
      study: mergeStudy(studyFromHeaders(headers), dicom),
      priority: parsePriority(headers[HEADERS.priority]),
      receivedAt,
      source: Source.SOURCE_KAFKA,
      sizeBytes: data.length,
      sha256: createHash('sha256').update(data).digest('hex'),
      data,
      uri: undefined,
    };
    await this.publisher.publish([
      {
        topic: this.config.TOPIC_IMAGES,
        key: id,
        value: asBuffer(ImageAccepted.encode(accepted).finish()),
        headers: { ...forward, [HEADERS.receivedAt]: receivedAt.toISOString() },
      },
    ]);
    return accepted;
  }

  /**
   * The study of a record for its error event: headers, overlaid with the DICOM header when one
   * can be read. Never throws (it runs while reporting another failure).
   */
  studyOf(upload: StudyUpload): StudyRef {
    const fromHeaders = studyFromHeaders(upload.headers);
    const data = upload.data;
    if (data.length === 0 || data.length > this.intake.maxBytes || sniffMediaType(data) !== 'application/dicom') return fromHeaders;
    try {
      const { info } = parseDicomFile(data, { maxInflatedBytes: this.intake.maxInflatedBytes }, { untilPixelData: true, stage: 'ingest' });
      return mergeStudy(fromHeaders, info);
    } catch {
      return fromHeaders;
    }
  }
}

export function intakeOptions(config: IngestConfig): IntakeOptions {
  return {
    maxBytes: config.INGEST_MAX_BYTES,
    maxInflatedBytes: config.INGEST_MAX_INFLATED_BYTES,
    dicomEnabled: config.INGEST_DICOM_ENABLED,
    modalities: config.INGEST_MODALITIES,
    viewPositions: config.INGEST_VIEW_POSITIONS,
    requireView: config.INGEST_REQUIRE_VIEW,
    bodyParts: config.INGEST_BODY_PARTS,
  };
}

export function studyFromHeaders(headers: Record<string, string>): StudyRef {
  return {
    studyUid: headers[HEADERS.studyUid] ?? '',
    seriesUid: '',
    sopInstanceUid: '',
    accession: headers[HEADERS.accession] ?? '',
    patientId: headers[HEADERS.patientId] ?? '',
    viewPosition: '',
    modality: '',
    bodyPart: '',
  };
}

/** DICOM tags win over headers for the same field; an absent tag keeps the header's value. */
export function mergeStudy(fromHeaders: StudyRef, dicom: DicomInfo | null): StudyRef {
  if (!dicom) return fromHeaders;
  const pick = (tag: string, header: string) => tag || header;
  return {
    studyUid: pick(dicom.studyInstanceUid, fromHeaders.studyUid),
    seriesUid: pick(dicom.seriesInstanceUid, fromHeaders.seriesUid),
    sopInstanceUid: pick(dicom.sopInstanceUid, fromHeaders.sopInstanceUid),
    accession: pick(dicom.accessionNumber, fromHeaders.accession),
    patientId: pick(dicom.patientId, fromHeaders.patientId),
    viewPosition: pick(dicom.viewPosition, fromHeaders.viewPosition),
    modality: pick(dicom.modality, fromHeaders.modality),
    bodyPart: pick(dicom.bodyPartExamined, fromHeaders.bodyPart),
  };
}

export function parsePriority(value: string | undefined): Priority {
  switch (value?.trim().toLowerCase()) {
    case 'stat':
      return Priority.PRIORITY_STAT;
    case 'routine':
      return Priority.PRIORITY_ROUTINE;
    default:
      return Priority.PRIORITY_UNSPECIFIED;
  }
}
