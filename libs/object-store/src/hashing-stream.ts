import { createHash, type Hash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { ObjectStoreError } from './object-store';

/**
 * Passes bytes through while hashing and counting them; fails with TOO_LARGE as soon as more than
 * `maxBytes` went through, so an oversize upload stops without being written whole.
 */
export class HashingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  /**
   * Bytes passed so far. Not named `size`: the AWS SDK's multipart upload reads a body's `size`
   * as its total length up front.
   */
  bytes = 0;

  constructor(private readonly maxBytes = Number.POSITIVE_INFINITY) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      callback(new ObjectStoreError('TOO_LARGE', `object larger than ${this.maxBytes} bytes`));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  /** The hex digest; call once, after the stream ended. */
  digest(): string {
    return this.hash.digest('hex');
  }
}

/** A Buffer or a stream, as a stream. */
export function asStream(body: Buffer | Readable): Readable {
  return Buffer.isBuffer(body) ? Readable.from([body]) : body;
}
