import { loadConfig } from '@thorax/config';
import { HEADERS, ImageAccepted, Source, ThoraxError } from '@thorax/contracts';
import type { OutgoingRecord, Publisher } from '@thorax/kafka';
import { FileObjectStore } from '@thorax/object-store';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

const OBJECTS = mkdtempSync(path.join(tmpdir(), 'thorax-intake-objects-'));
afterAll(() => rmSync(OBJECTS, { recursive: true, force: true }));

function service(env: Record<string, string> = {}) {
  const publisher = new FakePublisher();
  const store = new FileObjectStore(OBJECTS);
  return { publisher, store, intake: new StudyIntakeService(loadConfig(ingestConfigSchema, env), publisher, store) };
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

describe('StudyIntakeService claim-check', () => {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const dicom = readFileSync(path.join(FIXTURES, 'valid/mono2-explicit-le-window.dcm'));

  async function stored(store: FileObjectStore, body: Buffer, key = `studies/t/${Math.random().toString(36).slice(2)}`) {
    return store.put(key, body);
  }

  function reference(uri: string, body: Buffer, overrides: Record<string, string> = {}): Record<string, string> {
    return { [HEADERS.objectUri]: uri, [HEADERS.objectSha256]: sha(body), [HEADERS.objectSize]: String(body.length), ...overrides };
  }

  it('admits an empty record that refers to an object: the image carries the uri, digest and size, and the claim-check header', async () => {
    const { intake, publisher, store } = service();
    const object = await stored(store, dicom);
    const headers = { ...reference(object.uri, dicom), [HEADERS.source]: 'dicomweb', [HEADERS.claimCheck]: 'file:///forged' };
    const accepted = await intake.admit({ id: 'cc-1', data: Buffer.alloc(0), headers }, new Date(), { [HEADERS.claimCheck]: 'file:///forged' });
    expect(accepted.data).toBeUndefined();
    expect(accepted.uri).toBe(object.uri);
    expect(accepted.sha256).toBe(sha(dicom));
    expect(accepted.sizeBytes).toBe(dicom.length);
    expect(accepted.source).toBe(Source.SOURCE_DICOMWEB);
    expect(accepted.study?.sopInstanceUid).toBe('1.2.826.0.1.3680043.8.498.4.3.1');
    const decoded = ImageAccepted.decode(publisher.sent[0]?.value as Buffer);
    expect(decoded.uri).toBe(object.uri);
    expect(decoded.data).toBeUndefined();
    expect(publisher.sent[0]?.headers?.[HEADERS.claimCheck]).toBe(object.uri);
  });

  it('never passes on a producer\'s claim-check header for an inline record', async () => {
    const { intake, publisher } = service();
    await intake.admit(record('valid/mono2-explicit-le-window.dcm'), new Date(), { [HEADERS.claimCheck]: 'file:///victim' });
    expect(publisher.sent[0]?.headers?.[HEADERS.claimCheck]).toBeUndefined();
  });

  it('refuses a missing object, a size mismatch, a uri outside studies/ or the store, malformed headers, and value plus reference', async () => {
    const { intake, store, publisher } = service({ INGEST_OBJECT_MAX_BYTES: '100000000' });
    const object = await stored(store, dicom);
    const review = await store.put('review/x', dicom);
    const admit = (headers: Record<string, string>, data = Buffer.alloc(0)) => codeOf(intake.admit({ id: 'x', data, headers }, new Date(), {}));
    await store.put('studies/t/gone', dicom);
    const gone = reference(`${store.location}/studies/t/gone`, dicom);
    await store.delete(gone[HEADERS.objectUri] as string);
    expect(await admit(gone)).toBe('OBJECT_NOT_FOUND@ingest');
    expect(await admit(reference(object.uri, dicom, { [HEADERS.objectSize]: String(dicom.length + 1) }))).toBe('OBJECT_DIGEST_MISMATCH@ingest');
    expect(await admit(reference(review.uri, dicom))).toBe('OBJECT_REFERENCE_INVALID@ingest');
    expect(await admit(reference('file:///etc/passwd', dicom))).toBe('OBJECT_REFERENCE_INVALID@ingest');
    expect(await admit(reference(`${store.location}/studies/../../etc/passwd`, dicom))).toBe('OBJECT_REFERENCE_INVALID@ingest');
    expect(await admit(reference(object.uri, dicom, { [HEADERS.objectSha256]: 'abc' }))).toBe('OBJECT_REFERENCE_INVALID@ingest');
    expect(await admit(reference(object.uri, dicom, { [HEADERS.objectSize]: '-1' }))).toBe('OBJECT_REFERENCE_INVALID@ingest');
    expect(await admit(reference(object.uri, dicom), dicom)).toBe('OBJECT_REFERENCE_INVALID@ingest');
    expect(await admit(reference(object.uri, dicom, { [HEADERS.objectSize]: '200000000' }))).toBe('PAYLOAD_TOO_LARGE@ingest');
    expect(publisher.sent).toEqual([]);
  });

  it('applies the DICOM gates to a claim-checked object, reading its head only', async () => {
    const { intake, store } = service({ INGEST_MODALITIES: 'MR' });
    const object = await stored(store, dicom);
    expect(await codeOf(intake.admit({ id: 'x', data: Buffer.alloc(0), headers: reference(object.uri, dicom) }, new Date(), {}))).toBe(
      'UNSUPPORTED_MODALITY@ingest',
    );
  });
});
