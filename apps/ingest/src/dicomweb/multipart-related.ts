/** The request body is not well-formed multipart (RFC 2046 5.1): answered 400. */
export class MalformedMultipart extends Error {}

/** Header block of one part, at most this many bytes. */
export const MAX_PART_HEADER_BYTES = 16 * 1024;

export interface MultipartPart {
  /** Header names lower-cased. */
  headers: Record<string, string>;
  /** The part's bytes; read it to the end (or leave it: `next()` skips the rest). */
  body: AsyncIterable<Buffer>;
}

const CRLF = Buffer.from('\r\n');

/**
 * A streaming reader of a multipart body (RFC 2046 5.1, as STOW-RS sends it with
 * `multipart/related`): parts come one at a time, each body as chunks while the request is still
 * arriving, so an instance of hundreds of megabytes is never held whole. Only a window of the
 * delimiter's length is kept between chunks.
 */
export class MultipartReader {
  private readonly source: AsyncIterator<Buffer>;
  private readonly delimiter: Buffer;
  private buf: Buffer = Buffer.alloc(0);
  private eof = false;
  private state: 'preamble' | 'headers' | 'body' | 'done' = 'preamble';
  private current: AsyncGenerator<Buffer> | null = null;

  constructor(source: AsyncIterable<Buffer | string>, boundary: string) {
    // RFC 2046 caps a boundary at 70 characters; Orthanc sends 73, so up to 200 are read.
    if (!/^[0-9A-Za-z'()+_,\-./:=? ]{1,200}$/.test(boundary) || boundary.endsWith(' ')) throw new MalformedMultipart('invalid boundary parameter');
    this.source = (async function* () {
      for await (const chunk of source) yield typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
    })();
    this.delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
  }

  /** The next part, or null after the close delimiter. */
  async next(): Promise<MultipartPart | null> {
    if (this.current) {
      for await (const _ of this.current) void _;
      this.current = null;
    }
    if (this.state === 'preamble') await this.skipPreamble();
    if (this.state === 'done') return null;
    const headers = await this.readHeaders();
    this.state = 'body';
    const body = this.readBody();
    this.current = body;
    // No return(): a consumer that stops early leaves the rest for next() to skip.
    return { headers, body: { [Symbol.asyncIterator]: () => ({ next: () => body.next() }) } };
  }

  private async fill(): Promise<boolean> {
    if (this.eof) return false;
    const { value, done } = await this.source.next();
    if (done) {
      this.eof = true;
      return false;
    }
    this.buf = this.buf.length === 0 ? value : Buffer.concat([this.buf, value]);
    return true;
  }

  /** Skips the preamble and the first delimiter (which may start the body, without its CRLF). */
  private async skipPreamble(): Promise<void> {
    const first = this.delimiter.subarray(2);
    for (;;) {
      if (this.buf.length >= first.length && this.buf.subarray(0, first.length).equals(first)) {
        this.buf = this.buf.subarray(first.length);
        return this.afterDelimiter();
      }
      const at = this.buf.indexOf(this.delimiter);
      if (at >= 0) {
        this.buf = this.buf.subarray(at + this.delimiter.length);
        return this.afterDelimiter();
      }
      if (this.buf.length > 64 * 1024) throw new MalformedMultipart('no boundary delimiter in the first 64 KiB');
      if (!(await this.fill())) throw new MalformedMultipart('no boundary delimiter in the body');
    }
  }

  /** After a delimiter: `--` closes the body; else optional padding and CRLF start a part. */
  private async afterDelimiter(): Promise<void> {
    while (this.buf.length < 2) if (!(await this.fill())) throw new MalformedMultipart('body ends after a delimiter');
    if (this.buf[0] === 0x2d && this.buf[1] === 0x2d) {
      this.state = 'done';
      return;
    }
    for (;;) {
      const eol = this.buf.indexOf(CRLF);
      if (eol >= 0) {
        if (!/^[ \t]*$/.test(this.buf.subarray(0, eol).toString('latin1'))) throw new MalformedMultipart('text after a boundary delimiter');
        this.buf = this.buf.subarray(eol + 2);
        this.state = 'headers';
        return;
      }
      if (this.buf.length > 1024) throw new MalformedMultipart('boundary line too long');
      if (!(await this.fill())) throw new MalformedMultipart('body ends after a delimiter');
    }
  }

  private async readHeaders(): Promise<Record<string, string>> {
    for (;;) {
      const end = this.buf.length >= 2 && this.buf[0] === 0x0d && this.buf[1] === 0x0a ? 0 : this.buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const block = this.buf.subarray(0, end).toString('latin1');
        this.buf = this.buf.subarray(end === 0 ? 2 : end + 4);
        return parseHeaderBlock(block);
      }
      if (this.buf.length > MAX_PART_HEADER_BYTES) throw new MalformedMultipart(`part headers longer than ${MAX_PART_HEADER_BYTES} bytes`);
      if (!(await this.fill())) throw new MalformedMultipart('body ends inside part headers');
    }
  }

  private async *readBody(): AsyncGenerator<Buffer> {
    const keep = this.delimiter.length - 1;
    for (;;) {
      const at = this.buf.indexOf(this.delimiter);
      if (at >= 0) {
        if (at > 0) yield this.buf.subarray(0, at);
        this.buf = this.buf.subarray(at + this.delimiter.length);
        await this.afterDelimiter();
        return;
      }
      if (this.buf.length > keep) {
        const out = this.buf.subarray(0, this.buf.length - keep);
        this.buf = Buffer.from(this.buf.subarray(this.buf.length - keep));
        yield out;
      }
      if (!(await this.fill())) throw new MalformedMultipart('body ends inside a part (no closing delimiter)');
    }
  }
}

function parseHeaderBlock(block: string): Record<string, string> {
  const headers: Record<string, string> = {};
  if (block === '') return headers;
  for (const line of block.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MalformedMultipart('part header line without a name');
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name)) throw new MalformedMultipart('invalid part header name');
    headers[name] = line.slice(colon + 1).trim();
  }
  return headers;
}

export interface MediaType {
  type: string;
  params: Record<string, string>;
}

/** Parses a Content-Type value (RFC 9110 8.3.1): lower-cased type and parameter names, quoted values unquoted. */
export function parseMediaType(value: string | undefined): MediaType | null {
  if (!value) return null;
  const match = /^\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+\/[!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*/.exec(value);
  if (!match) return null;
  const params: Record<string, string> = {};
  const rest = /;\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=("(?:[^"\\]|\\.)*"|[^;\s]*)\s*/g;
  rest.lastIndex = match[0].length;
  let m: RegExpExecArray | null;
  let consumed = match[0].length;
  while ((m = rest.exec(value)) !== null && m.index === consumed) {
    const raw = m[2] as string;
    params[(m[1] as string).toLowerCase()] = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
    consumed = rest.lastIndex;
  }
  if (value.slice(consumed).trim() !== '' && value.slice(consumed).trim() !== ';') return null;
  return { type: (match[1] as string).toLowerCase(), params };
}
