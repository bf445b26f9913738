import { HEADERS, ThoraxError } from '@thorax/contracts';
import type { OutgoingRecord, Publisher } from '@thorax/kafka';
import { FileObjectStore } from '@thorax/object-store';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { loadConfig } from '@thorax/config';
import { ingestConfigSchema } from '../config';
import { InstanceSubmitter } from './instance-submitter';

const DICOM_FILE = join(__dirname, '../../../../test/fixtures/imaging/valid/mono2-explicit-le-window.dcm');

class RecordingPublisher implements Publisher {
  readonly records: OutgoingRecord[] = [];
  fail: Error | null = null;
  async publish(records: OutgoingRecord[]): Promise<void> {
    if (this.fail) throw this.fail;
    this.records.push(...records);
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function chunked(data: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return Readable.from(parts);
}

describe('InstanceSubmitter', () => {
  let dir: string;
  let store: FileObjectStore;
  let publisher: RecordingPublisher;
  let submitter: InstanceSubmitter;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'thorax-submit-'));
    store = new FileObjectStore(dir);
    publisher = new RecordingPublisher();
    const config = loadConfig(ingestConfigSchema, {
      INGEST_INLINE_MAX_BYTES: '1000',
      INGEST_OBJECT_MAX_BYTES: '50000',
      OBJECT_STORE_URL: `file://${dir}`,
    });
    submitter = new InstanceSubmitter(config, publisher, store);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('puts an instance up to the inline limit in the record value, with source and caller headers', async () => {
    const body = randomBytes(1000);
    const submitted = await submitter.submit({
      id: 'img-1',
      contentType: 'image/png',
      body,
      headers: { [HEADERS.accession]: 'ACC-1', [HEADERS.objectUri]: 'file:///etc/passwd', 'x-other': 'dropped' },
      source: 'http',
    });
    expect(submitted).toEqual({ id: 'img-1', sizeBytes: 1000, claimCheck: false });
    expect(publisher.records).toHaveLength(1);
    const [record] = publisher.records;
    expect(record?.topic).toBe('thorax.studies.v1');
    expect(record?.key).toBe('img-1');
    expect((record?.value as Buffer).equals(body)).toBe(true);
    expect(record?.headers).toMatchObject({ [HEADERS.source]: 'http', [HEADERS.accession]: 'ACC-1', [HEADERS.contentType]: 'image/png' });
    expect(record?.headers?.[HEADERS.objectUri]).toBeUndefined();
    expect(record?.headers?.['x-other']).toBeUndefined();
    expect(Date.now() - new Date(record?.headers?.[HEADERS.receivedAt] ?? 0).getTime()).toBeLessThan(5000);
  });

  it('spills a stream past the inline limit to studies/ and publishes an empty value with the claim-check headers', async () => {
    const body = randomBytes(20_000);
    const submitted = await submitter.submit({ id: 'big-1', body: chunked(body, 300), source: 'dicomweb' });
    expect(submitted).toEqual({ id: 'big-1', sizeBytes: 20_000, claimCheck: true });
    const headers = publisher.records[0]?.headers ?? {};
    expect((publisher.records[0]?.value as Buffer).length).toBe(0);
    expect(headers[HEADERS.objectSha256]).toBe(sha(body));
    expect(headers[HEADERS.objectSize]).toBe('20000');
    expect(headers[HEADERS.source]).toBe('dicomweb');
    const uri = headers[HEADERS.objectUri] ?? '';
    expect(store.keyOf(uri)).toMatch(/^studies\/\d{4}-\d{2}-\d{2}\/[0-9a-f-]{36}$/);
    expect((await store.get(uri)).equals(body)).toBe(true);
  });

  it('keeps a short stream inline', async () => {
    const body = randomBytes(999);
    expect(await submitter.submit({ id: 'small', body: chunked(body, 100), source: 'grpc' })).toEqual({ id: 'small', sizeBytes: 999, claimCheck: false });
    expect((publisher.records[0]?.value as Buffer).equals(body)).toBe(true);
  });

  it('keys a DICOM without an id by its SOP Instance UID, and anything else by a UUID', async () => {
    const dicom = readFileSync(DICOM_FILE);
    // Streamed: the SOP Instance UID comes from the head even when the rest is still to be read.
    const submitted = await submitter.submit({ body: chunked(dicom.subarray(0, 40_000), 4096), source: 'dimse' });
    expect(submitted.id).toBe('1.2.826.0.1.3680043.8.498.4.3.1');
    const png = await submitter.submit({ body: Buffer.from('not dicom at all'), source: 'http' });
    expect(png.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('refuses an instance over INGEST_OBJECT_MAX_BYTES without leaving an object or a record', async () => {
    const error = await submitter.submit({ id: 'huge', body: chunked(randomBytes(60_000), 1000), source: 'http' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ThoraxError);
    expect((error as ThoraxError).code).toBe('PAYLOAD_TOO_LARGE');
    expect(publisher.records).toEqual([]);
    const left = [];
    for await (const info of store.list('')) left.push(info);
    expect(left).toEqual([]);
  });

  it('removes the object when the record is not acknowledged, and says try again', async () => {
    publisher.fail = new Error('broker down');
    const error = await submitter.submit({ id: 'lost', body: randomBytes(5000), source: 'http' }).catch((e: unknown) => e);
    expect((error as ThoraxError).code).toBe('INTERNAL_ERROR');
    expect((error as ThoraxError).transient).toBe(true);
    const left = [];
    for await (const info of store.list('studies/')) left.push(info);
    expect(left).toEqual([]);
  });

  it('refuses empty bodies and unusable ids', async () => {
    expect(((await submitter.submit({ body: Buffer.alloc(0), source: 'http' }).catch((e: unknown) => e)) as ThoraxError).code).toBe('EMPTY_PAYLOAD');
    expect(((await submitter.submit({ id: 'a b', body: Buffer.from('x'), source: 'http' }).catch((e: unknown) => e)) as ThoraxError).code).toBe('MISSING_KEY');
    expect(((await submitter.submit({ id: 'x'.repeat(300), body: Buffer.from('x'), source: 'http' }).catch((e: unknown) => e)) as ThoraxError).code).toBe(
      'MISSING_KEY',
    );
  });
});
