import { Inject, Injectable } from '@nestjs/common';
import {
  HEADERS,
  ImageAccepted,
  Priority,
  Source,
  type StudyRef,
  ThoraxError,
} from '@thorax/contracts';
import { type MediaType, parseDeclaredMediaType, sniffMediaType } from '@thorax/imaging';
import { forwardedHeaders, type IncomingRecord, PUBLISHER, type Publisher } from '@thorax/kafka';
import { createHash } from 'node:crypto';
import { INGEST_CONFIG, type IngestConfig } from '../config';

/**
 * Admits one raw study record: checks it is a file type the contract accepts, gathers study
 * metadata from the PACS headers, stamps the receipt time and hands it to preprocess on
 * thorax.images.v1. Pixel decoding happens in preprocess.
 */
@Injectable()
export class StudyIntakeService {
  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
  ) {}

  async admit(record: IncomingRecord, receivedAt: Date): Promise<ImageAccepted> {
    const id = record.key;
    if (!id) throw new ThoraxError('MISSING_KEY', 'record key (image id) is empty', { stage: 'ingest' });
    const data = record.value;
    if (!data || data.length === 0) throw new ThoraxError('EMPTY_PAYLOAD', 'record has no bytes', { stage: 'ingest' });
    if (data.length > this.config.INGEST_MAX_BYTES) {
      throw new ThoraxError('PAYLOAD_TOO_LARGE', `${data.length} bytes exceeds ${this.config.INGEST_MAX_BYTES}`, {
        stage: 'ingest',
      });
    }
    const contentType = resolveMediaType(record.headers[HEADERS.contentType], data);
    if (contentType === 'application/dicom') {
      throw new ThoraxError('DICOM_NOT_SUPPORTED', 'DICOM decoding is not enabled in this build', { stage: 'ingest' });
    }
    const accepted: ImageAccepted = {
      id,
      contentType,
      study: studyFromHeaders(record.headers),
      priority: parsePriority(record.headers[HEADERS.priority]),
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
        value: Buffer.from(ImageAccepted.encode(accepted).finish()),
        headers: forwardedHeaders(record, { [HEADERS.receivedAt]: receivedAt.toISOString() }),
      },
    ]);
    return accepted;
  }
}

/** Declared type when it agrees with the bytes; sniffed type when none is declared. */
export function resolveMediaType(declaredHeader: string | undefined, data: Buffer): MediaType {
  const sniffed = sniffMediaType(data);
  const declared = parseDeclaredMediaType(declaredHeader);
  if (declared === 'other') {
    throw new ThoraxError('UNSUPPORTED_MEDIA_TYPE', `content-type ${declaredHeader} is not accepted`, { stage: 'ingest' });
  }
  if (!sniffed) {
    throw new ThoraxError('UNSUPPORTED_MEDIA_TYPE', 'bytes are not DICOM, PNG or JPEG', { stage: 'ingest' });
  }
  if (declared && declared !== sniffed) {
    throw new ThoraxError('CONTENT_TYPE_MISMATCH', `declared ${declared} but the bytes are ${sniffed}`, { stage: 'ingest' });
  }
  return sniffed;
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
