/**
 * The SCP on a real socket against dcmtk's storescu, with the pipeline replaced by a recording
 * submitter: what reaches the pipeline is an ordinary Part 10 file, and a pipeline that cannot
 * take an instance (Kafka down) or an instance over the limit answers 0xA700 so the PACS retries.
 */
import { ThoraxError } from '@thorax/contracts';
import { DEFAULT_INTAKE_OPTIONS, parseDicomFile } from '@thorax/imaging';
import { createLogger, ThoraxMetrics } from '@thorax/observability';
import { Server } from 'dcmjs-dimse';
import { execFile, execFileSync } from 'node:child_process';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { EdgeAudit } from '../audit/edge-audit';
import type { Submission } from '../edge/instance-submitter';
import { part10Header } from './part10';
import { storageScpClass, type StorageScpContext } from './storage-scp';

jest.setTimeout(60_000);

const run = promisify(execFile);
const FIXTURE = path.join(__dirname, '..', '..', '..', '..', 'test', 'fixtures', 'imaging', 'valid', 'mono2-8bit.dcm');
const log = createLogger({ service: 'ingest-test', version: 'test', level: 'silent' });

beforeAll(() => {
  // dcmtk's storescu is the client (installed from Debian when missing, as in CI).
  execFileSync('bash', ['-c', `. ${path.join(__dirname, '..', '..', '..', '..', 'scripts', 'lib.sh')} && ensure_apt_packages dcmtk`], { stdio: 'inherit' });
});

async function bytesOf(body: Buffer | Readable): Promise<Buffer> {
  if (Buffer.isBuffer(body)) return body;
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const SPOOL = mkdtempSync(path.join(tmpdir(), 'scp-spool-'));

async function withScp(
  submit: (s: Submission) => Promise<void>,
  maxInstanceBytes: number,
  test: (port: number) => Promise<void>,
  maxAssociations = 4,
): Promise<void> {
  const ctx: StorageScpContext = {
    options: { aeTitle: 'THORAX', allowedCallingAeTitles: null, maxAssociations, maxInstanceBytes, maxPduBytes: 65536, spoolDir: SPOOL },
    intake: DEFAULT_INTAKE_OPTIONS,
    submitter: {
      submit: async (s) => {
        await submit(s);
        return { id: s.id ?? '', sizeBytes: 0, claimCheck: false };
      },
    },
    audit: new EdgeAudit(log, new ThoraxMetrics('ingest-test')),
    log,
    live: new Set(),
    inFlight: new Set(),
  };
  const server = new Server(storageScpClass(ctx));
  await new Promise<void>((resolve) => {
    server.once('listening', () => resolve());
    server.listen(0);
  });
  try {
    await test(((server as unknown as { server: NetServer }).server.address() as AddressInfo).port);
  } finally {
    server.close();
  }
}

/** An explicit VR little endian element (short form, or the long form for OW). */
function element(group: number, elem: number, vr: string, value: Buffer): Buffer {
  const long = vr === 'OW';
  const head = Buffer.alloc(long ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(elem, 2);
  head.write(vr, 4, 'latin1');
  if (long) head.writeUInt32LE(value.length, 8);
  else head.writeUInt16LE(value.length, 6);
  return Buffer.concat([head, value]);
}
const text = (v: string) => Buffer.from(v.length % 2 ? `${v}\0` : v, 'latin1');
const us = (n: number) => Buffer.from([n & 0xff, n >> 8]);

/** A 4096 x 2560 16-bit DX (20 MiB of pixels): above the 16 MiB the spool keeps in memory. */
function largeDx(sop: string): string {
  const rows = 2560;
  const columns = 4096;
  const pixels = Buffer.alloc(rows * columns * 2);
  for (let i = 0; i < pixels.length; i += 2) pixels.writeUInt16LE((i >> 5) & 0xfff, i);
  const dataset = Buffer.concat([
    element(0x0008, 0x0016, 'UI', text('1.2.840.10008.5.1.4.1.1.1.1')),
    element(0x0008, 0x0018, 'UI', text(sop)),
    element(0x0008, 0x0060, 'CS', text('DX')),
    element(0x0020, 0x000d, 'UI', text(`${sop}.1`)),
    element(0x0028, 0x0002, 'US', us(1)),
    element(0x0028, 0x0004, 'CS', text('MONOCHROME2 ')),
    element(0x0028, 0x0010, 'US', us(rows)),
    element(0x0028, 0x0011, 'US', us(columns)),
    element(0x0028, 0x0100, 'US', us(16)),
    element(0x0028, 0x0101, 'US', us(12)),
    element(0x0028, 0x0102, 'US', us(11)),
    element(0x0028, 0x0103, 'US', us(0)),
    element(0x7fe0, 0x0010, 'OW', pixels),
  ]);
  const head = part10Header({ sopClassUid: '1.2.840.10008.5.1.4.1.1.1.1', sopInstanceUid: sop, transferSyntaxUid: '1.2.840.10008.1.2.1', sourceAeTitle: 'MODALITY' });
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'scp-')), 'large.dcm');
  writeFileSync(file, Buffer.concat([head, dataset]));
  return file;
}

async function storescu(port: number, file = FIXTURE): Promise<string> {
  try {
    const { stdout, stderr } = await run('storescu', ['-v', '-aet', 'PACS', '-aec', 'THORAX', '127.0.0.1', String(port), file]);
    return stdout + stderr;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return `${e.stdout ?? ''}${e.stderr ?? ''}`;
  }
}

describe('storage SCP', () => {
  it('hands the pipeline a Part 10 file with the sender in its File Meta, keyed by the SOP Instance UID', async () => {
    const received: { id?: string; bytes: Buffer; source: string }[] = [];
    await withScp(async (s) => void received.push({ id: s.id, bytes: await bytesOf(s.body), source: s.source }), 1 << 20, async (port) => {
      expect(await storescu(port)).toMatch(/Received Store Response \(Success\)/);
    });
    expect(received).toHaveLength(1);
    const { info, dataSet } = parseDicomFile(received[0]!.bytes, DEFAULT_INTAKE_OPTIONS, { untilPixelData: false, stage: 'ingest' });
    expect({ id: received[0]!.id, source: received[0]!.source }).toEqual({ id: info.sopInstanceUid, source: 'dimse' });
    expect(info).toMatchObject({ modality: 'DX', hasPixelData: true });
    expect(dataSet.string('x00020016')).toBe('PACS');
  });

  it('streams an instance above 16 MiB from its temporary file, byte for byte, and removes the file', async () => {
    const sop = '2.25.7730931';
    const file = largeDx(sop);
    let received: Buffer = Buffer.alloc(0);
    let streamed = false;
    let spooled: string[] = [];
    await withScp(
      async (s) => {
        streamed = !Buffer.isBuffer(s.body);
        spooled = readdirSync(SPOOL);
        received = await bytesOf(s.body);
      },
      64 << 20,
      async (port) => expect(await storescu(port, file)).toMatch(/Received Store Response \(Success\)/),
    );
    expect(streamed).toBe(true);
    const sent = readFileSync(file);
    // Same dataset; the File Meta is the SCP's own (source AE PACS).
    const dataset = (b: Buffer) => b.subarray(144 + b.readUInt32LE(140));
    expect(dataset(received).equals(dataset(sent))).toBe(true);
    expect(spooled).toHaveLength(1);
    expect(readdirSync(SPOOL)).toEqual([]);
  });

  it('answers 0xA700 (out of resources) when the pipeline cannot take the instance now', async () => {
    await withScp(
      async () => {
        throw new ThoraxError('INTERNAL_ERROR', 'the studies topic did not acknowledge the record', { transient: true });
      },
      1 << 20,
      async (port) => expect(await storescu(port)).toMatch(/Received Store Response \(Refused: OutOfResources\)/),
    );
  });

  it('refuses an association beyond INGEST_DIMSE_MAX_ASSOCIATIONS as transient (local limit exceeded)', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    await withScp(
      () => held,
      1 << 20,
      async (port) => {
        const first = storescu(port);
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const second = await storescu(port);
        release();
        expect(second).toMatch(/Rejected Transient[\s\S]*Local Limit Exceeded/);
        expect(await first).toMatch(/Received Store Response \(Success\)/);
      },
      1,
    );
  });

  it('answers 0xA700 for an instance above the limit, without handing it on', async () => {
    let calls = 0;
    await withScp(async () => void (calls += 1), 10_000, async (port) => expect(await storescu(port)).toMatch(/Refused: OutOfResources/));
    expect(calls).toBe(0);
  });
});
