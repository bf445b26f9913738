import { readdir } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InstanceSpool } from './instance-spool';

async function fill(spool: InstanceSpool, bytes: Buffer, chunk: number): Promise<void> {
  await pipeline(
    Readable.from((function* () {
      for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk);
    })()),
    spool,
  );
}

async function drain(body: Buffer | Readable): Promise<Buffer> {
  if (Buffer.isBuffer(body)) return body;
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

jest.setTimeout(30_000);

describe('InstanceSpool', () => {
  const bytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));

  it('keeps a small instance in memory', async () => {
    const spool = new InstanceSpool({ maxBytes: 1e6, memoryBytes: 1e6 });
    await fill(spool, bytes, 10_000);
    expect(spool.spilled).toBe(false);
    expect((await drain(spool.body(Buffer.from('head')))).equals(Buffer.concat([Buffer.from('head'), bytes]))).toBe(true);
    expect((await spool.prefix(10)).equals(bytes.subarray(0, 10))).toBe(true);
  });

  it('moves a large one to a private file, streams it back and removes it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spool-'));
    const spool = new InstanceSpool({ maxBytes: 1e6, memoryBytes: 50_000, dir });
    await fill(spool, bytes, 7_000);
    expect(spool.spilled).toBe(true);
    expect(spool.size).toBe(bytes.length);
    expect((await spool.prefix(60_000)).equals(bytes.subarray(0, 60_000))).toBe(true);
    const body = spool.body(Buffer.from('head'));
    expect(Buffer.isBuffer(body)).toBe(false);
    expect((await drain(body)).equals(Buffer.concat([Buffer.from('head'), bytes]))).toBe(true);
    expect((await spool.whole()).equals(bytes)).toBe(true);
    expect(await readdir(dir)).toHaveLength(1);
    await spool.discard();
    expect(await readdir(dir)).toHaveLength(0);
  });

  it('counts but stores nothing past maxBytes', async () => {
    const spool = new InstanceSpool({ maxBytes: 100_000, memoryBytes: 50_000, dir: mkdtempSync(join(tmpdir(), 'spool-')) });
    await fill(spool, bytes, 30_000);
    expect(spool.overflowed).toBe(true);
    expect(spool.size).toBe(bytes.length);
    await spool.discard();
  });
});
