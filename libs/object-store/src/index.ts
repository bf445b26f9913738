import { type ObjectStoreEnv, type ObjectStoreOptions, objectStoreOptions } from '@thorax/config';
import { FileObjectStore } from './file-object-store';
import type { ObjectStore } from './object-store';
import { S3ObjectStore } from './s3-object-store';

export { ByteBudget } from './byte-budget';
export * from './claim-check';
export { FileObjectStore } from './file-object-store';
export * from './object-store';
export { S3ObjectStore } from './s3-object-store';

/**
 * The object store OBJECT_STORE_URL names: a directory (`file://`) or an S3 bucket (`s3://`).
 * Takes the parsed variables (any service config) or options already built from them.
 */
export function createObjectStore(config: ObjectStoreEnv | ObjectStoreOptions): ObjectStore {
  const options = 'kind' in config ? config : objectStoreOptions(config);
  return options.kind === 'file' ? new FileObjectStore(options.directory) : new S3ObjectStore(options);
}
