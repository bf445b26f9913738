import { loadConfig } from '@thorax/config';
import { ImageAccepted, ThoraxError } from '@thorax/contracts';
import type { OutgoingRecord, Publisher } from '@thorax/kafka';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ingestConfigSchema } from '../config';
import { StudyIntakeService, type StudyUpload } from './study-intake.service';

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const FIXTURES = path.resolve(__dirname, '../../../../test/fixtures/imaging');

class FakePublisher implements Publisher {
  readonly sent: OutgoingRecord[] = [];
  async publish(records: OutgoingRecord[]): Promise<void> {
    this.sent.push(...records);
  }
}

function record(file: string, headers: Record<string, string> = {}): StudyUpload {
  return { id: 'img-1', data: readFileSync(path.join(FIXTURES, file)), headers };
}

function service(env: Record<string, string> = {}) {
  const publisher = new FakePublisher();
  return { publisher, intake: new StudyIntakeService(loadConfig(ingestConfigSchema, env), publisher) };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return error instanceof ThoraxError ? `${error.code}@${error.options.stage}` : `unclassified ${(error as Error).message}`;
  }
}

describe('StudyIntakeService', () => {
  it('fills the study from DICOM tags, which win over PACS headers', async () => {
    const { intake, publisher } = service();
    const accepted = await intake.admit(
      record('valid/mono1-explicit-le.dcm', { 'thorax-study-uid': '9.9.9', 'thorax-accession': 'HDR-ACC', 'thorax-priority': 'stat' }),
      new Date(0),
      { traceparent: TRACEPARENT },
    );
    expect(accepted.contentType).toBe('application/dicom');
    expect(accepted.study).toEqual({
      studyUid: '1.2.826.0.1.3680043.8.498.4.1.3',
      seriesUid: '1.2.826.0.1.3680043.8.498.4.2.3',
      sopInstanceUid: '1.2.826.0.1.3680043.8.498.4.3.3',
      accession: 'ACC00003',
      patientId: 'PAT00003',
      viewPosition: 'AP',
      modality: 'CR',
      bodyPart: 'CHEST',
    });
    expect(publisher.sent).toHaveLength(1);
    expect(publisher.sent[0]?.headers).toEqual({ traceparent: TRACEPARENT, 'thorax-received-at': '1970-01-01T00:00:00.000Z' });
    const sent = ImageAccepted.decode(publisher.sent[0]?.value ?? Buffer.alloc(0));
    expect(sent.study?.sopInstanceUid).toBe('1.2.826.0.1.3680043.8.498.4.3.3');
    expect(Buffer.from(sent.data ?? []).equals(readFileSync(path.join(FIXTURES, 'valid/mono1-explicit-le.dcm')))).toBe(true);
  });

  it('keeps header values for fields the DICOM lacks', async () => {
    const { intake } = service();
    const accepted = await intake.admit(record('valid/mono2-no-view-no-body-part.dcm', { 'thorax-accession': 'HDR' }), new Date(0), {});
    expect(accepted.study).toMatchObject({ accession: 'ACC00013', viewPosition: '', bodyPart: '' });
    const png = await intake.admit(record('valid/grey8.png', { 'thorax-accession': 'HDR', 'thorax-patient-id': 'P1' }), new Date(0), {});
    expect(png.study).toMatchObject({ accession: 'HDR', patientId: 'P1', modality: '' });
  });

  it('applies the clinical gates, each configurable', async () => {
    const { intake } = service();
    expect(await codeOf(intake.admit(record('hostile/modality-ct.dcm'), new Date(0), {}))).toBe('UNSUPPORTED_MODALITY@ingest');
    expect(await codeOf(intake.admit(record('hostile/view-ll.dcm'), new Date(0), {}))).toBe('UNSUPPORTED_VIEW@ingest');
    expect(await codeOf(intake.admit(record('hostile/body-part-head.dcm'), new Date(0), {}))).toBe('UNSUPPORTED_BODY_PART@ingest');
    const open = service({ INGEST_MODALITIES: '*', INGEST_VIEW_POSITIONS: 'PA,AP,LL', INGEST_BODY_PARTS: '*' }).intake;
    expect(await codeOf(open.admit(record('hostile/modality-ct.dcm'), new Date(0), {}))).toBe('ok');
    expect(await codeOf(open.admit(record('hostile/view-ll.dcm'), new Date(0), {}))).toBe('ok');
    expect(await codeOf(open.admit(record('hostile/body-part-head.dcm'), new Date(0), {}))).toBe('ok');
    const strict = service({ INGEST_REQUIRE_VIEW: 'true' }).intake;
    expect(await codeOf(strict.admit(record('valid/mono2-no-view-no-body-part.dcm'), new Date(0), {}))).toBe('UNSUPPORTED_VIEW@ingest');
    const off = service({ INGEST_DICOM_ENABLED: 'false' }).intake;
    expect(await codeOf(off.admit(record('valid/mono2-explicit-le-window.dcm'), new Date(0), {}))).toBe('DICOM_NOT_SUPPORTED@ingest');
    expect(await codeOf(off.admit(record('valid/grey8.png'), new Date(0), {}))).toBe('ok');
  });

  it('refuses an unsupported transfer syntax and limits inflated size', async () => {
    const { intake } = service({ INGEST_MAX_INFLATED_BYTES: '1000000' });
    expect(await codeOf(intake.admit(record('hostile/ts-mpeg2.dcm'), new Date(0), {}))).toBe('UNSUPPORTED_TRANSFER_SYNTAX@ingest');
    expect(await codeOf(intake.admit(record('valid/mono2-deflated.dcm'), new Date(0), {}))).toBe('ok');
    expect(await codeOf(intake.admit(record('hostile/deflate-bomb-300mib.dcm'), new Date(0), {}))).toBe('PAYLOAD_TOO_LARGE@ingest');
  });

  it('reports the DICOM study on error events, and never throws doing so', () => {
    const { intake } = service();
    expect(intake.studyOf(record('hostile/view-ll.dcm'))).toMatchObject({ viewPosition: 'LL', modality: 'DX', accession: 'ACC00103' });
    expect(intake.studyOf(record('hostile/dicm-then-random.dcm', { 'thorax-accession': 'H' }))).toMatchObject({ accession: 'H' });
    expect(intake.studyOf({ ...record('valid/grey8.png'), data: Buffer.alloc(0) })).toMatchObject({ studyUid: '' });
  });
});
