// Decode throughput of the preprocess path (file bytes → 256×256 wire image), printed as
// images/s: a 2048×2500 16-bit (12 bits stored) DICOM uncompressed, JPEG-LS lossless and
// JPEG 2000 lossless, and 1024×1024 PNGs (8- and 16-bit). Inline = one image at a time on this
// thread; pool = the preprocess decode pool (worker threads) with every core busy.
//
//   npm run bench:decode                 (builds dist/ first)
//   BENCH_SECONDS=5 BENCH_WORKERS=2 npm run bench:decode
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const imaging = require(path.join(root, 'dist/libs/imaging/src/index.js'));
const sharp = require('sharp');

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const WORKERS = Number(process.env.BENCH_WORKERS ?? os.availableParallelism());

function chest(width, height, max) {
  const out = new Uint16Array(width * height);
  let s = 12345;
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const nx = (x - width / 2) / (width * 0.45);
      const ny = (y - height / 2) / (height * 0.48);
      let v = nx * nx + ny * ny < 1 ? 0.7 : 0.08;
      const lx = Math.abs(nx) - 0.4;
      if (lx * lx * 4 + ny * ny * 1.8 < 0.25) v = 0.3;
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      v += ((s % 1000) / 1000 - 0.5) * 0.04;
      out[y * width + x] = Math.max(0, Math.min(max, Math.round(v * max)));
    }
  }
  return out;
}

/** A minimal explicit-VR little-endian Part 10 file (bench input only). */
function dicom({ rows, columns, transferSyntax, pixelData, encapsulated }) {
  const parts = [];
  const el = (group, element, vr, value) => {
    const long = ['OB', 'OW', 'UN', 'SQ', 'UT'].includes(vr);
    const padded = value.length % 2 ? Buffer.concat([value, Buffer.from([vr === 'UI' || vr === 'OB' ? 0 : 0x20])]) : value;
    const head = Buffer.alloc(long ? 12 : 8);
    head.writeUInt16LE(group, 0);
    head.writeUInt16LE(element, 2);
    head.write(vr, 4, 'latin1');
    if (long) head.writeUInt32LE(encapsulated && group === 0x7fe0 ? 0xffffffff : padded.length, 8);
    else head.writeUInt16LE(padded.length, 6);
    return Buffer.concat([head, padded]);
  };
  const str = (s) => Buffer.from(s, 'latin1');
  const us = (n) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(n);
    return b;
  };
  const meta = Buffer.concat([el(0x0002, 0x0001, 'OB', Buffer.from([0, 1])), el(0x0002, 0x0010, 'UI', str(transferSyntax))]);
  parts.push(Buffer.alloc(128), str('DICM'), el(0x0002, 0x0000, 'UL', Buffer.from(new Uint32Array([meta.length]).buffer)), meta);
  parts.push(
    el(0x0008, 0x0060, 'CS', str('DX')),
    el(0x0028, 0x0002, 'US', us(1)),
    el(0x0028, 0x0004, 'CS', str('MONOCHROME2')),
    el(0x0028, 0x0010, 'US', us(rows)),
    el(0x0028, 0x0011, 'US', us(columns)),
    el(0x0028, 0x0100, 'US', us(16)),
    el(0x0028, 0x0101, 'US', us(12)),
    el(0x0028, 0x0102, 'US', us(11)),
    el(0x0028, 0x0103, 'US', us(0)),
    el(0x0028, 0x1050, 'DS', str('2000')),
    el(0x0028, 0x1051, 'DS', str('3000')),
  );
  if (!encapsulated) {
    parts.push(el(0x7fe0, 0x0010, 'OW', pixelData));
  } else {
    const item = (bytes) => {
      const h = Buffer.alloc(8);
      h.writeUInt16LE(0xfffe, 0);
      h.writeUInt16LE(0xe000, 2);
      h.writeUInt32LE(bytes.length, 4);
      return Buffer.concat([h, bytes]);
    };
    const frame = pixelData.length % 2 ? Buffer.concat([pixelData, Buffer.alloc(1)]) : pixelData;
    const end = Buffer.alloc(8);
    end.writeUInt16LE(0xfffe, 0);
    end.writeUInt16LE(0xe0dd, 2);
    parts.push(el(0x7fe0, 0x0010, 'OB', Buffer.alloc(0)).subarray(0, 12), item(Buffer.alloc(0)), item(frame), end);
  }
  return Buffer.concat(parts);
}

async function encode(kind, samples, width, height) {
  const factory = require(kind === 'j2k' ? '@cornerstonejs/codec-openjpeg/wasmjs' : '@cornerstonejs/codec-charls/wasmjs');
  const module = await factory({ print: () => {}, printErr: () => {} });
  const encoder = kind === 'j2k' ? new module.J2KEncoder() : new module.JpegLSEncoder();
  const info = { width, height, bitsPerSample: 12, componentCount: 1, isSigned: false, isUsingColorTransform: false };
  const bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
  encoder.getDecodedBuffer(info).set(bytes);
  encoder.encode();
  const out = Buffer.from(encoder.getEncodedBuffer());
  encoder.delete();
  return out;
}

async function measure(label, bytes, decode, parallel) {
  await decode(bytes);
  let done = 0;
  const started = process.hrtime.bigint();
  const until = Date.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (Date.now() < until) {
        await decode(bytes);
        done += 1;
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const rate = done / seconds;
  console.log(`${label.padEnd(58)} ${rate.toFixed(1).padStart(7)} images/s  (${(1000 / rate).toFixed(1)} ms/image${parallel > 1 ? ` over ${parallel} in flight` : ''})`);
}

const W = 2048;
const H = 2500;
const samples = chest(W, H, 4095);
const native = dicom({ rows: H, columns: W, transferSyntax: '1.2.840.10008.1.2.1', pixelData: Buffer.from(samples.buffer) });
const jls = dicom({ rows: H, columns: W, transferSyntax: '1.2.840.10008.1.2.4.80', pixelData: await encode('jls', samples, W, H), encapsulated: true });
const j2k = dicom({ rows: H, columns: W, transferSyntax: '1.2.840.10008.1.2.4.90', pixelData: await encode('j2k', samples, W, H), encapsulated: true });
const small = chest(1024, 1024, 65535);
const png16 = await sharp(Buffer.from(small.buffer), { raw: { width: 1024, height: 1024, channels: 1, depth: 'ushort' } }).toColourspace('grey16').png().toBuffer();
const png8 = await sharp(Buffer.from(Uint8Array.from(small, (v) => v >> 8)), { raw: { width: 1024, height: 1024, channels: 1 } }).png().toBuffer();

const options = imaging.DEFAULT_WIRE_OPTIONS;
const inputs = [
  ['DICOM 2048x2500 16-bit, explicit VR LE (uncompressed)', native],
  ['DICOM 2048x2500 16-bit, JPEG-LS lossless', jls],
  ['DICOM 2048x2500 16-bit, JPEG 2000 lossless', j2k],
  ['PNG 1024x1024 8-bit grey', png8],
  ['PNG 1024x1024 16-bit grey', png16],
];
console.log(`[bench:decode] node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), ${SECONDS} s per line`);
console.log(`inputs: ${inputs.map(([l, b]) => `${l.split(',')[0].split(' ').slice(0, 2).join(' ')} ${(b.length / 1e6).toFixed(2)} MB`).join('; ')}`);
console.log('— inline (one image at a time, this thread)');
for (const [label, bytes] of inputs) await measure(label, bytes, (b) => imaging.toWireImage(b, options), 1);
const pool = new imaging.DecodePool({ wire: options, workers: WORKERS, workerHeapMb: 2048 });
console.log(`— decode pool (${pool.mode}, ${WORKERS} workers, ${WORKERS * 2} in flight)`);
for (const [label, bytes] of inputs) await measure(label, bytes, (b) => pool.decode(b), WORKERS * 2);
await pool.close();
