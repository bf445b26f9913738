import { randomBytes } from 'node:crypto';
import { nativeCrc32c } from './native-crc32c';

// kafkajs's own implementation, the one the native function replaces (native-crc32c.ts).
const kafkajsCrc32c = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (buffer: Buffer) => number;

describe('nativeCrc32c', () => {
  it('gives the CRC-32C check value of the standard test vector', () => {
    expect(nativeCrc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('equals kafkajs own CRC-32C on empty, small, odd-sized and large buffers', () => {
    for (const size of [0, 1, 3, 8, 15, 64, 1_000, 65_536, 250_001, 1_048_576]) {
      const buffer = randomBytes(size);
      expect({ size, crc: nativeCrc32c(buffer) }).toEqual({ size, crc: kafkajsCrc32c(buffer) });
    }
  });

  it('is unsigned for every input, as kafkajs writes it', () => {
    for (let i = 0; i < 200; i += 1) expect(nativeCrc32c(randomBytes(33))).toBeGreaterThanOrEqual(0);
  });
});
