import { MalformedMultipart, MultipartReader, parseMediaType } from './multipart-related';

const B = 'thorax-boundary-42';

function body(parts: { headers: string; data: Buffer }[], options: { preamble?: string; epilogue?: string } = {}): Buffer {
  const chunks: Buffer[] = [];
  if (options.preamble) chunks.push(Buffer.from(`${options.preamble}\r\n`));
  for (const part of parts) chunks.push(Buffer.from(`--${B}\r\n${part.headers}\r\n\r\n`), part.data, Buffer.from('\r\n'));
  chunks.push(Buffer.from(`--${B}--\r\n${options.epilogue ?? ''}`));
  return Buffer.concat(chunks);
}

/** Feeds `bytes` in chunks of `size` (1 puts every delimiter across chunk edges). */
async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function readAll(bytes: Buffer, size: number): Promise<{ headers: Record<string, string>; data: Buffer }[]> {
  const reader = new MultipartReader(chunked(bytes, size), B);
  const out: { headers: Record<string, string>; data: Buffer }[] = [];
  for (let part = await reader.next(); part !== null; part = await reader.next()) {
    const chunks: Buffer[] = [];
    for await (const chunk of part.body) chunks.push(chunk);
    out.push({ headers: part.headers, data: Buffer.concat(chunks) });
  }
  return out;
}

describe('MultipartReader', () => {
  // Bodies that contain the boundary text without its leading CRLF, CRLFs and dashes.
  const a = Buffer.concat([Buffer.from('DICM'), Buffer.alloc(3000, 7), Buffer.from(`--${B}\n\r\n-`)]);
  const b = Buffer.from(`\r\n--${B.slice(0, -1)}x\r\n`);
  const parts = [
    { headers: 'Content-Type: application/dicom', data: a },
    { headers: 'content-type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\nContent-Location: x', data: b },
    { headers: 'Content-Type: application/dicom', data: Buffer.alloc(0) },
  ];

  it.each([1, 2, 7, 64, 4096, 1 << 20])('reads every part byte for byte with %i-byte chunks', async (size) => {
    const read = await readAll(body(parts, { preamble: 'ignored preamble', epilogue: 'ignored' }), size);
    expect(read.map((p) => p.data)).toEqual(parts.map((p) => p.data));
    expect(read[1]?.headers).toEqual({ 'content-type': 'application/dicom; transfer-syntax=1.2.840.10008.1.2.1', 'content-location': 'x' });
  });

  it('skips the rest of a part the consumer left unread', async () => {
    const reader = new MultipartReader(chunked(body(parts), 100), B);
    const first = await reader.next();
    for await (const chunk of first!.body) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    const second = await reader.next();
    const chunks: Buffer[] = [];
    for await (const chunk of second!.body) chunks.push(chunk);
    expect(Buffer.concat(chunks)).toEqual(b);
  });

  it('streams: the first bytes of a part come before its end has arrived', async () => {
    let sent = 0;
    async function* slow(): AsyncGenerator<Buffer> {
      const all = body([{ headers: 'Content-Type: application/dicom', data: Buffer.alloc(1_000_000, 1) }]);
      for (let i = 0; i < all.length; i += 10_000) {
        sent = i + 10_000;
        yield all.subarray(i, i + 10_000);
      }
    }
    const part = await new MultipartReader(slow(), B).next();
    const iterator = part!.body[Symbol.asyncIterator]();
    await iterator.next();
    expect(sent).toBeLessThan(100_000);
  });

  it.each([
    ['no delimiter at all', Buffer.from('just some bytes')],
    ['no close delimiter', Buffer.from(`--${B}\r\nContent-Type: application/dicom\r\n\r\nDICM...`)],
    ['a header line without a colon', Buffer.from(`--${B}\r\nnot a header\r\n\r\nx\r\n--${B}--`)],
    ['body ending inside the headers', Buffer.from(`--${B}\r\nContent-Type: application/dicom\r\n`)],
    ['text after a delimiter', Buffer.from(`--${B}garbage\r\n\r\nx\r\n--${B}--`)],
  ])('refuses %s', async (_, bytes) => {
    await expect(readAll(bytes, 5)).rejects.toBeInstanceOf(MalformedMultipart);
  });

  it('refuses oversized part headers and a bad boundary', async () => {
    const huge = Buffer.from(`--${B}\r\nX-Long: ${'a'.repeat(20_000)}\r\n\r\nx\r\n--${B}--`);
    await expect(readAll(huge, 1000)).rejects.toThrow(/part headers longer/);
    expect(() => new MultipartReader(chunked(Buffer.alloc(0), 1), 'bad"boundary')).toThrow(MalformedMultipart);
    expect(() => new MultipartReader(chunked(Buffer.alloc(0), 1), 'x'.repeat(201))).toThrow(MalformedMultipart);
    expect(() => new MultipartReader(chunked(Buffer.alloc(0), 1), 'x'.repeat(73))).not.toThrow();
  });

  it('a body with only the close delimiter has no parts', async () => {
    expect(await readAll(Buffer.from(`--${B}--\r\n`), 3)).toEqual([]);
  });
});

describe('parseMediaType', () => {
  it('reads type and parameters, quoted or not', () => {
    expect(parseMediaType('Multipart/Related; type="application/dicom"; boundary=abc')).toEqual({
      type: 'multipart/related',
      params: { type: 'application/dicom', boundary: 'abc' },
    });
    expect(parseMediaType('multipart/related;boundary="a \\"b\\" c";type=application/dicom')?.params).toEqual({
      boundary: 'a "b" c',
      type: 'application/dicom',
    });
  });
  it('refuses what is not a media type', () => {
    expect(parseMediaType(undefined)).toBeNull();
    expect(parseMediaType('multipart')).toBeNull();
    expect(parseMediaType('multipart/related; boundary')).toBeNull();
  });
});
