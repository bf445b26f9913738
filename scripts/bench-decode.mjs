// Decode cost of the preprocess path (file bytes → 256×256 wire image), in one run. Every figure
// is images/s (wall) and CPU ms per image (all threads of this process); on a shared machine the
// CPU figure is the one to compare.
//
//   1. v1 vs v2, one image at a time on this thread: v1 is the recipe before libvips took the
//      resize (decode, grey levels in a Float64Array, the hand-written Lanczos-3 kept below as
//      `v1Resize`); v2 is libs/imaging today (libvips Lanczos-3 through sharp).
//  1b. DICOM only, one image at a time: CPU per image of the file to grey levels (parse, codec,
//      lookup), of the float plane's resize alone, and of the whole toWireImage.
//   2. v2 with every core busy: directly (toWireImage: sharp's work on libuv's pool), in worker
//      threads, and through the decode pool as preprocess uses it, against the native ceiling:
//      sharp's bare decode + resize of the same bytes (PNG), or libvips' resize of the already
//      decoded 16-bit samples (DICOM: sharp cannot read DICOM, so the codec is not in it).
//
// Inputs: PNG 512² and 1024² 8-bit, PNG 1024² 16-bit, a 2048×2500 16-bit (12 bits stored) DICOM
// uncompressed, JPEG-LS lossless and JPEG 2000 lossless.
//
//   npm run bench:decode                 (builds dist/ first)
//   BENCH_SECONDS=5 BENCH_WORKERS=2 npm run bench:decode
//   BENCH_INPUTS=dicom node scripts/bench-decode.mjs   (only the inputs whose label holds that text)
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const imaging = require(path.join(root, 'dist/libs/imaging/src/index.js'));
const sharp = require('sharp');
sharp.cache(false);
sharp.concurrency(1);

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WORKERS = Number(process.env.BENCH_WORKERS ?? os.availableParallelism());
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

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

/**
 * Runs `decode` for `seconds` with `parallel` in flight. Returns images/s (wall) and CPU ms per
 * image: the process's user + system time (every thread: this one, libuv's pool, the decode
 * workers) over the images done. CPU per image is the figure that survives a shared machine.
 */
async function rate(bytes, decode, parallel, seconds) {
  let done = 0;
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  const until = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (Date.now() < until) {
        await decode(bytes);
        done += 1;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return { perSecond: done / (Number(process.hrtime.bigint() - started) / 1e9), cpuMs: (used.user + used.system) / 1000 / done };
}

/**
 * Side-by-side figures: ROUNDS rounds, each giving every contender SECONDS / ROUNDS seconds in
 * turn; each contender's figures are the medians of its rounds.
 */
async function compare(bytes, contenders, parallel) {
  for (const decode of contenders) if (decode) await decode(bytes);
  const rounds = contenders.map(() => []);
  for (let r = 0; r < ROUNDS; r += 1) {
    for (const [i, decode] of contenders.entries()) if (decode) rounds[i].push(await rate(bytes, decode, parallel, SECONDS / ROUNDS));
  }
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  return rounds.map((list) =>
    list.length === 0 ? null : { perSecond: median(list.map((x) => x.perSecond)), cpuMs: median(list.map((x) => x.cpuMs)) },
  );
}

const fmt = (r) => (r ? `${r.perSecond.toFixed(1).padStart(7)}/s ${r.cpuMs.toFixed(1).padStart(7)} ms` : '—'.padStart(19));

// ---- v1: the resize before thorax.wire.v2 (float64 plane, hand-written Lanczos-3) ----------
function lanczos3(x) {
  if (x < -3 || x >= 3) return 0;
  const sinc = (v) => (v === 0 ? 1 : Math.sin(v * Math.PI) / (v * Math.PI));
  return sinc(x) * sinc(x / 3);
}
function axisTaps(inSize, outSize, first, outputs) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 3 * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outputs);
  const count = new Int32Array(outputs);
  const weight = new Float64Array(outputs * taps);
  for (let o = 0; o < outputs; o += 1) {
    const center = (first + o + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    let total = 0;
    let n = 0;
    for (let x = lo; x < hi && n < taps; x += 1, n += 1) {
      const w = lanczos3((x - center + 0.5) / filterScale);
      weight[o * taps + n] = w;
      total += w;
    }
    start[o] = lo;
    count[o] = n;
    if (total !== 0) for (let t = 0; t < n; t += 1) weight[o * taps + t] /= total;
  }
  return { start, count, weight, taps };
}
function v1Resize(plane, width, height, size) {
  const target = imaging.resizedSize(width, height, size);
  const left = Math.floor((target.width - size) / 2);
  const top = Math.floor((target.height - size) / 2);
  const out = new Uint8Array(size * size);
  const h = axisTaps(width, target.width, left, size);
  const horizontal = new Float64Array(height * size);
  for (let y = 0; y < height; y += 1) {
    for (let o = 0; o < size; o += 1) {
      let sum = 0;
      const from = y * width + h.start[o];
      for (let t = 0; t < h.count[o]; t += 1) sum += h.weight[o * h.taps + t] * plane[from + t];
      horizontal[y * size + o] = sum;
    }
  }
  const v = axisTaps(height, target.height, top, size);
  const column = new Float64Array(size);
  for (let o = 0; o < size; o += 1) {
    column.fill(0);
    for (let t = 0; t < v.count[o]; t += 1) {
      const w = v.weight[o * v.taps + t];
      const row = (v.start[o] + t) * size;
      for (let x = 0; x < size; x += 1) column[x] += w * horizontal[row + x];
    }
    for (let x = 0; x < size; x += 1) out[o * size + x] = Math.min(255, Math.max(0, Math.floor(column[x] + 0.5)));
  }
  return out;
}
/** v1 per image: decode to samples, grey levels as a Float64Array (with v1's copies), v1 resize. */
async function v1Wire(bytes, options) {
  if (bytes[0] === 0x89) {
    const meta = await sharp(bytes).metadata();
    const base = sharp(bytes, { failOn: 'warning' }).autoOrient();
    if (meta.depth === 'ushort') {
      const { data, info } = await base.pipelineColourspace('grey16').toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
      const samples = new Uint16Array(data.buffer, data.byteOffset, data.length >> 1);
      const { grey } = imaging.monochromeToGrey({ values: Int32Array.from(samples), bitsStored: 16, signed: false }, { slope: 1, intercept: 0, invert: false });
      return v1Resize(Float64Array.from(grey), info.width, info.height, options.size);
    }
    const { data, info } = await base.pipelineColourspace('b-w').toColourspace('b-w').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return v1Resize(Float64Array.from(data), info.width, info.height, options.size);
  }
  const parsed = imaging.parseDicomFile(bytes, { maxInflatedBytes: options.maxInflatedBytes }, { untilPixelData: false, stage: 'preprocess' });
  const decoded = await imaging.dicomToGrey(parsed, { maxPixels: options.maxInputPixels, maxFrames: options.maxFrames, timeoutSeconds: 20 });
  return v1Resize(Float64Array.from(decoded.grey), decoded.width, decoded.height, options.size);
}

/** The native ceiling: sharp alone, decode + the same resize, no grey-level work (see header). */
function ceiling(input) {
  if (input.png) {
    return async (bytes) => {
      const meta = await sharp(bytes).metadata();
      const g = imaging.wireGeometry(meta.width, meta.height, 256);
      await sharp(bytes).resize(g.width, g.height, { kernel: 'lanczos3', fit: 'fill' }).extract({ left: g.left, top: g.top, width: 256, height: 256 }).toColourspace(meta.depth === 'ushort' ? 'grey16' : 'b-w').raw().toBuffer();
    };
  }
  const g = imaging.wireGeometry(W, H, 256);
  const raw = Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
  return async () => {
    await sharp(raw, { raw: { width: W, height: H, channels: 1, depth: 'ushort' } }).resize(g.width, g.height, { kernel: 'lanczos3', fit: 'fill' }).extract({ left: g.left, top: g.top, width: 256, height: 256 }).raw().toBuffer();
  };
}

const W = 2048;
const H = 2500;
const samples = chest(W, H, 4095);
const native = dicom({ rows: H, columns: W, transferSyntax: '1.2.840.10008.1.2.1', pixelData: Buffer.from(samples.buffer) });
const jls = dicom({ rows: H, columns: W, transferSyntax: '1.2.840.10008.1.2.4.80', pixelData: await encode('jls', samples, W, H), encapsulated: true });
const j2k = dicom({ rows: H, columns: W, transferSyntax: '1.2.840.10008.1.2.4.90', pixelData: await encode('j2k', samples, W, H), encapsulated: true });
const png8 = async (side) => {
  const grey = chest(side, side, 255);
  return sharp(Buffer.from(Uint8Array.from(grey)), { raw: { width: side, height: side, channels: 1 } }).toColourspace('b-w').png().toBuffer();
};
const small = chest(1024, 1024, 65535);
const png16 = await sharp(Buffer.from(small.buffer), { raw: { width: 1024, height: 1024, channels: 1, depth: 'ushort' } }).toColourspace('grey16').png().toBuffer();

const options = imaging.DEFAULT_WIRE_OPTIONS;
const allInputs = [
  { label: 'PNG 512x512 8-bit grey', bytes: await png8(512), png: true },
  { label: 'PNG 1024x1024 8-bit grey', bytes: await png8(1024), png: true },
  { label: 'PNG 1024x1024 16-bit grey', bytes: png16, png: true },
  { label: 'DICOM 2048x2500 16-bit, uncompressed', bytes: native },
  { label: 'DICOM 2048x2500 16-bit, JPEG-LS lossless', bytes: jls },
  { label: 'DICOM 2048x2500 16-bit, JPEG 2000 lossless', bytes: j2k },
];
const inputs = allInputs.filter((i) => !process.env.BENCH_INPUTS || i.label.toLowerCase().includes(process.env.BENCH_INPUTS.toLowerCase()));
const cores = os.availableParallelism();
console.log(`[bench:decode] node ${process.version}, ${cores} cores (${os.cpus()[0]?.model ?? '?'}), libvips ${sharp.versions.vips}; each figure: median of ${ROUNDS} interleaved rounds, ${SECONDS} s in all`);
console.log(`inputs: ${inputs.map((i) => `${i.label.split(',')[0]} ${(i.bytes.length / 1e6).toFixed(2)} MB`).join('; ')}`);

console.log('\n1. one image at a time (this thread): v1 (float64, hand-written Lanczos) vs v2 (libvips); images/s and CPU ms per image');
console.log(`${'input'.padEnd(44)} ${'v1'.padStart(19)} ${'v2'.padStart(19)}  v1/v2 CPU  v2/v1 img/s`);
for (const input of inputs) {
  const [v1, v2] = await compare(input.bytes, [(b) => v1Wire(b, options), (b) => imaging.toWireImage(b, options)], 1);
  console.log(`${input.label.padEnd(44)} ${fmt(v1)} ${fmt(v2)}  ${(v1.cpuMs / v2.cpuMs).toFixed(2).padStart(8)}x  ${(v2.perSecond / v1.perSecond).toFixed(2).padStart(10)}x`);
}

console.log('\n1b. where a DICOM image\'s CPU goes, one image at a time (this thread), CPU ms per image: the file to grey levels (parse, codec, modality/VOI lookup into the float plane), the float plane\'s libvips resize alone, and the whole toWireImage');
console.log(`${'input'.padEnd(44)} ${'to grey levels'.padStart(15)} ${'float resize'.padStart(13)} ${'toWireImage'.padStart(12)}`);
for (const input of inputs.filter((i) => !i.png)) {
  const limits = { maxPixels: options.maxInputPixels, maxFrames: options.maxFrames, timeoutSeconds: 20 };
  const toGrey = (b) => imaging.dicomToGrey(imaging.parseDicomFile(b, { maxInflatedBytes: options.maxInflatedBytes }, { untilPixelData: false, stage: 'preprocess' }), limits);
  const { grey, width, height } = await toGrey(input.bytes);
  const [levels, resize, whole] = await compare(input.bytes, [toGrey, () => imaging.resizeGreyPlane(grey, width, height, options.size, 20), (b) => imaging.toWireImage(b, options)], 1);
  console.log(`${input.label.padEnd(44)} ${levels.cpuMs.toFixed(1).padStart(12)} ms ${resize.cpuMs.toFixed(1).padStart(10)} ms ${whole.cpuMs.toFixed(1).padStart(9)} ms`);
}

const inFlight = WORKERS * 2;
const pool = new imaging.DecodePool({ wire: options, workers: WORKERS, workerHeapMb: 2048 });
console.log(`\n2. every core busy (${inFlight} in flight): v2 direct (toWireImage: sharp on libuv's pool, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? 4}), v2 in worker threads (a pool of ${WORKERS}, every input), the decode pool as preprocess uses it (PNG/JPEG on sharp, at most ${WORKERS} at a time; DICOM in its workers), native ceiling`);
console.log(`${'input'.padEnd(44)} ${'direct'.padStart(19)} ${'workers'.padStart(19)} ${'decode pool'.padStart(19)} ${'ceiling'.padStart(19)}  ceiling/pool CPU  pool/ceiling img/s`);
// The alternative the decode pool no longer takes for PNG/JPEG: the same decode in worker
// threads (its compiled worker script, a request each way, the file copied in as the pool did).
const workerThreads = Array.from({ length: WORKERS }, () => new Worker(path.join(root, 'dist/libs/imaging/src/decode.worker.js')));
const waiting = new Map();
for (const w of workerThreads) w.on('message', (reply) => waiting.get(reply.id)?.(reply));
let nextId = 1;
function inWorker(bytes) {
  const id = nextId++;
  const copy = new Uint8Array(bytes);
  return new Promise((resolve, reject) => {
    waiting.set(id, (reply) => {
      waiting.delete(id);
      if (reply.ok) resolve(reply.wire);
      else reject(new Error(reply.message));
    });
    workerThreads[id % WORKERS].postMessage({ id, length: copy.length, bytes: copy.buffer, options }, [copy.buffer]);
  });
}
for (const input of inputs) {
  // DICOM codecs are synchronous WASM: "direct" would run them on this thread (not an option
  // for the service), and "workers" is what the pool does with them; both shown for PNG only.
  const [direct, workers, pooled, top] = await compare(
    input.bytes,
    [input.png ? (b) => imaging.toWireImage(b, options) : null, input.png ? (b) => inWorker(b) : null, (b) => pool.decode(b), ceiling(input)],
    inFlight,
  );
  console.log(
    `${input.label.padEnd(44)} ${fmt(direct)} ${fmt(workers)} ${fmt(pooled)} ${fmt(top)}  ${(top.cpuMs / pooled.cpuMs).toFixed(2).padStart(15)}x  ${(pooled.perSecond / top.perSecond).toFixed(2).padStart(17)}x`,
  );
}
await pool.close();
await Promise.all(workerThreads.map((w) => w.terminate()));
