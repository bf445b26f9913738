import { Inject, Injectable } from '@nestjs/common';
import { HEADERS, ImageAccepted, Priority, Source, type StudyRef, ThoraxError } from '@thorax/contracts';
import { type DicomInfo, type IntakeOptions, type IntakeResult, inspectStudy, parseDicomFile, sniffMediaType } from '@thorax/imaging';
import { encodedRecord, PUBLISHER, type Publisher } from '@thorax/kafka';
import { type ClaimCheck, type ObjectStore, objectStoreFailure, parseClaimCheck } from '@thorax/object-store';
import { createHash } from 'node:crypto';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { OBJECT_STORE } from '../edge/object-store.provider';

/**
 * How much of a claim-checked object ingest reads to find the DICOM header: a first try, then a
 * larger one for headers with big private or overlay elements. Pixel data is never read here.
 */
const HEADER_READS = [1024 * 1024, 32 * 1024 * 1024];

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
    @Inject(OBJECT_STORE) private readonly store: ObjectStore,
  ) {
    this.intake = intakeOptions(config);
  }

  /**
   * `forward`: the headers that follow the study downstream (trace context). A record with an
   * empty value and the claim-check headers refers to an object (docs/object-store.md): ingest
   * checks that it exists with the stated size and reads only its header; preprocess fetches it
   * whole and verifies the SHA-256.
   */
  async admit(upload: StudyUpload, receivedAt: Date, forward: Record<string, string>): Promise<ImageAccepted> {
    const { id, data, headers } = upload;
    if (!id) throw new ThoraxError('MISSING_KEY', 'record key (image id) is empty', { stage: 'ingest' });
    // Only ingest says which object an image came from: a producer's header is never passed on.
    const { [HEADERS.claimCheck]: _untrusted, ...trusted } = forward;
    const claimCheck = parseClaimCheck(headers, this.store, 'ingest');
    if (claimCheck && data.length > 0) {
      throw new ThoraxError('OBJECT_REFERENCE_INVALID', 'a record carries either a value or a claim-check, not both', { stage: 'ingest' });
    }
    const { contentType, dicom } = claimCheck
      ? await this.inspectObject(claimCheck, headers[HEADERS.contentType])
      : inspectStudy(data, headers[HEADERS.contentType], this.intake);
    const accepted: ImageAccepted = {
      id,
      contentType,
      study: mergeStudy(studyFromHeaders(headers), dicom),
      priority: parsePriority(headers[HEADERS.priority]),
      receivedAt,
      source: parseSource(headers[HEADERS.source]),
      sizeBytes: claimCheck ? claimCheck.size : data.length,
      sha256: claimCheck ? claimCheck.sha256 : createHash('sha256').update(data).digest('hex'),
      data: claimCheck ? undefined : data,
      uri: claimCheck ? claimCheck.uri : undefined,
    };
    const outgoing = {
      ...trusted,
      [HEADERS.receivedAt]: receivedAt.toISOString(),
      ...(claimCheck ? { [HEADERS.claimCheck]: claimCheck.uri } : {}),
    };
    await this.publisher.publish([
      encodedRecord({ topic: this.config.TOPIC_IMAGES, key: id, headers: outgoing }, accepted, (m) => ImageAccepted.encode(m).finish()),
    ]);
    return accepted;
  }

  /** The checks of `inspectStudy` on a claim-checked object, reading its head only. */
  private async inspectObject(ref: ClaimCheck, declaredContentType: string | undefined): Promise<IntakeResult> {
    const max = this.config.INGEST_OBJECT_MAX_BYTES;
    if (ref.size > max) throw new ThoraxError('PAYLOAD_TOO_LARGE', `${ref.size} bytes exceeds ${max} (INGEST_OBJECT_MAX_BYTES)`, { stage: 'ingest' });
    const found = await this.store.stat(ref.uri).catch((error: unknown) => {
      throw objectStoreFailure(error, ref.uri, 'ingest');
    });
    if (!found) throw new ThoraxError('OBJECT_NOT_FOUND', 'the referenced object does not exist', { stage: 'ingest' });
    if (found.size !== ref.size) {
      throw new ThoraxError('OBJECT_DIGEST_MISMATCH', `the object has ${found.size} bytes, the record says ${ref.size}`, { stage: 'ingest' });
    }
    const options = { ...this.intake, maxBytes: max };
    for (const [attempt, length] of HEADER_READS.entries()) {
      const head = await this.readHead(ref.uri, Math.min(length, ref.size));
      try {
        return inspectStudy(head, declaredContentType, options);
      } catch (error) {
        // A header longer than the head read: try again with more, then give the verdict.
        const retry = error instanceof ThoraxError && error.code === 'CORRUPT_IMAGE' && head.length < ref.size && attempt < HEADER_READS.length - 1;
        if (!retry) throw error;
      }
    }
    throw new ThoraxError('CORRUPT_IMAGE', 'no DICOM header found', { stage: 'ingest' });
  }

  private async readHead(uri: string, length: number): Promise<Buffer> {
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of await this.store.open(uri, { start: 0, end: length - 1 })) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    } catch (error) {
      throw objectStoreFailure(error, uri, 'ingest');
    }
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

/** The edge a record came through (thorax-source), Kafka when absent or unknown. */
export function parseSource(value: string | undefined): Source {
  switch (value) {
    case 'http':
      return Source.SOURCE_HTTP;
    case 'grpc':
      return Source.SOURCE_GRPC;
    case 'dicomweb':
      return Source.SOURCE_DICOMWEB;
    case 'dimse':
      return Source.SOURCE_DIMSE;
    default:
      return Source.SOURCE_KAFKA;
  }
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
