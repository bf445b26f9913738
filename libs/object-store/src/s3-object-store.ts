import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { ObjectStoreOptions } from '@thorax/config';
import { Readable } from 'node:stream';
import { asStream, HashingStream } from './hashing-stream';
import {
  type ByteRange,
  checkKey,
  checkPrefix,
  type ObjectInfo,
  type ObjectStore,
  ObjectStoreError,
  type PutOptions,
  type StoredObject,
} from './object-store';

type S3Options = Extract<ObjectStoreOptions, { kind: 's3' }>;

/** Parts of a multipart upload: 8 MiB, two in flight (bounded memory for a 500 MB instance). */
const PART_SIZE = 8 * 1024 * 1024;
const QUEUE_SIZE = 2;

/**
 * Objects in an S3 bucket (AWS or an S3-compatible server) under an optional key prefix, through
 * the AWS SDK v3. Uploads stream as multipart uploads, so no object is held whole in memory; an
 * upload is complete or aborted, never half-visible. URIs are `s3://<bucket>/<prefix><key>`.
 */
export class S3ObjectStore implements ObjectStore {
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(options: S3Options) {
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.location = `s3://${this.bucket}/${this.prefix}`;
    this.client = new S3Client({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
      forcePathStyle: options.forcePathStyle,
      maxAttempts: 3,
    });
  }

  async put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<StoredObject> {
    checkKey(key);
    const hashing = new HashingStream(opts.maxBytes);
    const source = asStream(body);
    source.on('error', (error) => hashing.destroy(error));
    source.pipe(hashing);
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: this.prefix + key,
        Body: hashing,
        ...(opts.contentType ? { ContentType: opts.contentType } : {}),
      },
      partSize: PART_SIZE,
      queueSize: QUEUE_SIZE,
      leavePartsOnError: false,
    });
    // A failing body (too large, client gone) aborts the multipart upload.
    const failed = new Promise<never>((_, reject) => hashing.once('error', reject));
    try {
      await Promise.race([upload.done(), failed]);
    } catch (error) {
      source.unpipe(hashing);
      await upload.abort().catch(() => undefined);
      await upload.done().catch(() => undefined);
      // The SDK gives up without waiting for a CreateMultipartUpload it already sent; once its
      // answer is in, the upload it created is listed and aborted below (else it could be created
      // after the cleanup ran, on a slow server). After abort() the SDK starts no other.
      await (upload as unknown as { createMultiPartPromise?: Promise<unknown> }).createMultiPartPromise?.catch(() => undefined);
      await this.abortMultipartUploads(this.prefix + key);
      throw error instanceof ObjectStoreError ? error : unavailable(`writing ${key}`, error);
    }
    return { uri: this.uriOf(key), sha256: hashing.digest(), size: hashing.bytes };
  }

  /**
   * Aborts the unfinished multipart uploads of a key, so a failed upload leaves no stored parts
   * behind (the SDK's own abort does not always reach the server before the upload is dropped).
   * Best effort: a bucket lifecycle rule (AbortIncompleteMultipartUpload) is the backstop.
   */
  private async abortMultipartUploads(key: string): Promise<void> {
    try {
      const listed = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: key }));
      for (const upload of listed.Uploads ?? []) {
        if (upload.Key !== key || !upload.UploadId) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: upload.UploadId }));
      }
    } catch {
      // Left to the bucket's lifecycle rule.
    }
  }

  async get(uri: string): Promise<Buffer> {
    const stream = await this.open(uri);
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of stream) chunks.push(chunk as Buffer);
    } catch (error) {
      throw unavailable(uri, error);
    }
    return Buffer.concat(chunks);
  }

  async open(uri: string, range?: ByteRange): Promise<Readable> {
    const key = this.keyOf(uri);
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.prefix + key,
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
      const body = out.Body;
      if (body instanceof Readable) return body;
      if (!body) return Readable.from([]);
      return Readable.from([Buffer.from(await body.transformToByteArray())]);
    } catch (error) {
      throw classify(uri, error);
    }
  }

  async stat(uri: string): Promise<{ size: number } | null> {
    const key = this.keyOf(uri);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      return { size: out.ContentLength ?? 0 };
    } catch (error) {
      const classified = classify(uri, error);
      if (classified.kind === 'NOT_FOUND') return null;
      throw classified;
    }
  }

  async delete(uri: string): Promise<void> {
    const key = this.keyOf(uri);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
    } catch (error) {
      const classified = classify(uri, error);
      if (classified.kind !== 'NOT_FOUND') throw classified;
    }
  }

  async exists(uri: string): Promise<boolean> {
    return (await this.stat(uri)) !== null;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix);
    let token: string | undefined;
    do {
      let out;
      try {
        out = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }),
        );
      } catch (error) {
        throw unavailable(`listing ${prefix}`, error);
      }
      for (const item of out.Contents ?? []) {
        if (!item.Key) continue;
        const key = item.Key.slice(this.prefix.length);
        yield { uri: this.uriOf(key), key, size: item.Size ?? 0, lastModified: item.LastModified ?? new Date(0) };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  keyOf(uri: string): string {
    if (!uri.startsWith(this.location)) throw new ObjectStoreError('INVALID_URI', 'the URI is outside this object store');
    return checkKey(uri.slice(this.location.length));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private uriOf(key: string): string {
    return this.location + key;
  }
}

function classify(uri: string, error: unknown): ObjectStoreError {
  if (error instanceof ObjectStoreError) return error;
  if (error instanceof S3ServiceException) {
    const status = error.$metadata.httpStatusCode;
    if (status === 404 || error.name === 'NoSuchKey' || error.name === 'NotFound') {
      return new ObjectStoreError('NOT_FOUND', `object not found: ${uri}`, { cause: error });
    }
  }
  return unavailable(uri, error);
}

function unavailable(what: string, error: unknown): ObjectStoreError {
  const reason = (error as Error).name ?? 'error';
  return new ObjectStoreError('UNAVAILABLE', `object store: ${what} failed (${reason})`, { cause: error });
}
