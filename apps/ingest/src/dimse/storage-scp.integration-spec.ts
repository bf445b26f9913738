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
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { EdgeAudit } from '../audit/edge-audit';
import type { Submission } from '../edge/instance-submitter';
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

async function withScp(submit: (s: Submission) => Promise<void>, maxInstanceBytes: number, test: (port: number) => Promise<void>): Promise<void> {
  const ctx: StorageScpContext = {
    options: { aeTitle: 'THORAX', allowedCallingAeTitles: null, maxAssociations: 4, maxInstanceBytes, maxPduBytes: 65536 },
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

async function storescu(port: number): Promise<string> {
  try {
    const { stdout, stderr } = await run('storescu', ['-v', '-aet', 'PACS', '-aec', 'THORAX', '127.0.0.1', String(port), FIXTURE]);
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

  it('answers 0xA700 (out of resources) when the pipeline cannot take the instance now', async () => {
    await withScp(
      async () => {
        throw new ThoraxError('INTERNAL_ERROR', 'the studies topic did not acknowledge the record', { transient: true });
      },
      1 << 20,
      async (port) => expect(await storescu(port)).toMatch(/Received Store Response \(Refused: OutOfResources\)/),
    );
  });

  it('answers 0xA700 for an instance above the limit, without handing it on', async () => {
    let calls = 0;
    await withScp(async () => void (calls += 1), 10_000, async (port) => expect(await storescu(port)).toMatch(/Refused: OutOfResources/));
    expect(calls).toBe(0);
  });
});
