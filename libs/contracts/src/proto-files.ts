import { existsSync } from 'node:fs';
import path from 'node:path';
import { FILE_DESCRIPTOR_SET_BASE64 } from './generated/descriptor-set';

/**
 * Directory holding proto/thorax/v1/*.proto, found by walking up from this file (the layout is
 * the same from the sources and from dist/). gRPC reflection serves these files.
 */
export function protoRoot(start: string = __dirname): string {
  let dir = start;
  for (;;) {
    const candidate = path.join(dir, 'proto');
    if (existsSync(path.join(candidate, 'thorax', 'v1', 'findings.proto'))) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`proto/ not found above ${start}`);
    dir = parent;
  }
}

export const PROTO_FILES = {
  results: 'thorax/v1/results_service.proto',
  ingest: 'thorax/v1/ingest_service.proto',
} as const;

/**
 * The compiled descriptors gRPC reflection serves (a serialized google.protobuf.FileDescriptorSet
 * written by scripts/proto.sh with buf): every proto/thorax/v1 file with its imports, the
 * well-known types among them, and grpc/health/v1/health.proto and grpc/reflection/{v1,v1alpha}.
 */
export function fileDescriptorSet(): Buffer {
  return Buffer.from(FILE_DESCRIPTOR_SET_BASE64, 'base64');
}
