import Module from 'node:module';
import { crc32c } from '@node-rs/crc32';

/**
 * kafkajs checksums every record batch it produces with a byte-at-a-time CRC-32C written in
 * JavaScript: about 35 ms for a 10 MB DICOM and the largest single cost in a profile of ingest
 * (docs/inference.md, "Benchmark"). This swaps in a native (SIMD) CRC-32C with the same result
 * before kafkajs loads its own. kafkajs requires its record-batch code lazily, on the first
 * produce or fetch, so installing it when the client is built is early enough.
 */
const KAFKAJS_CRC32C = 'kafkajs/src/protocol/recordBatch/crc32C/index.js';

/** CRC-32C (Castagnoli) as kafkajs returns it: an unsigned 32-bit number. */
export function nativeCrc32c(buffer: Buffer): number {
  return crc32c(buffer) >>> 0;
}

/**
 * Registers `nativeCrc32c` as kafkajs's CRC-32C module. Returns false (and changes nothing)
 * when kafkajs already loaded its own, or when its layout is not the expected one.
 */
export function installNativeCrc32c(): boolean {
  let path: string;
  try {
    path = require.resolve(KAFKAJS_CRC32C);
  } catch {
    return false;
  }
  const cached = require.cache[path];
  if (cached) return cached.exports === nativeCrc32c;
  const replacement = new Module(path);
  replacement.filename = path;
  replacement.loaded = true;
  replacement.exports = nativeCrc32c;
  require.cache[path] = replacement;
  return true;
}
