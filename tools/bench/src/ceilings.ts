/**
 * The ceilings `npm run bench` divides each stage by (scripts/bench.sh, issue 11):
 *  - decode: native decode + resize of each raster file to the 256² wire image with sharp
 *    (libvips: decode, grey, shorter side to 256 with Lanczos-3, centre crop), every core busy;
 *  - ort: raw onnxruntime-node in process, images/s per batch size, the better of one session on
 *    every core and one single-threaded session per core;
 *  - floor: the native work alone, one image at a time on one thread, as CPU per image: the
 *    service's own decode path (libs/imaging toWireImage: sharp) per raster file, and one
 *    single-threaded ONNX Runtime session per batch size. No stage can cost less than this.
 * Prints one JSON object on stdout; the driver (tools/bench/py/bench.py) puts it in the table.
 *
 *   node dist/tools/bench/src/ceilings.js --seconds 3 --decode a.png b.png --ort model.onnx …
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { toWireImage } from '@thorax/imaging';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';

const WIRE = 256;

interface Args {
  seconds: number;
  decode: string[];
  ort: string[];
  batches: number[];
}

function parseArgs(argv: string[]): Args {
  const args: Args = { seconds: 3, decode: [], ort: [], batches: [1, 2, 4, 8, 16] };
  let list: string[] | undefined;
  for (const arg of argv) {
    if (arg === '--decode') list = args.decode;
    else if (arg === '--ort') list = args.ort;
    else if (arg.startsWith('--seconds=')) args.seconds = Number(arg.slice('--seconds='.length));
    else if (arg.startsWith('--batches=')) args.batches = arg.slice('--batches='.length).split(',').map(Number);
    else if (list) list.push(arg);
    else throw new Error(`unexpected argument ${arg}`);
  }
  return args;
}

/** Runs `work` with `inFlight` calls outstanding for `seconds`; returns calls per second. */
async function rate(work: () => Promise<unknown>, inFlight: number, seconds: number): Promise<number> {
  await work();
  let done = 0;
  const start = performance.now();
  const until = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < until) {
        await work();
        done += 1;
      }
    }),
  );
  return done / ((performance.now() - start) / 1000);
}

function wireImage(file: Buffer): Promise<Buffer> {
  return sharp(file, { limitInputPixels: 50_000_000 })
    .greyscale()
    .resize(WIRE, WIRE, { fit: 'cover', position: 'centre', kernel: 'lanczos3' })
    .raw()
    .toBuffer();
}

/**
 * Images/s per batch size, best of two layouts: one session on every core, and one
 * single-threaded session per core running at once (the inference service's layout: workers
 * with one ORT thread each). Rounds interleave the batch sizes so a burst of load from elsewhere
 * does not favour one; the median round counts.
 */
async function rawOrt(model: string, batches: number[], seconds: number): Promise<Record<number, number>> {
  const cores = availableParallelism();
  const create = (threads: number) =>
    ort.InferenceSession.create(model, {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
    });
  const layouts = [[await create(cores)], await Promise.all(Array.from({ length: cores }, () => create(1)))];
  const input = layouts[0]?.[0]?.inputNames[0] ?? 'image';
  const image = new Uint8Array(WIRE * WIRE).map((_, i) => (i * 31) % 251);
  const rates: Record<number, number[]> = {};
  for (let round = 0; round < 3; round += 1) {
    for (const size of batches) {
      const data = new Uint8Array(size * WIRE * WIRE);
      for (let i = 0; i < size; i += 1) data.set(image, i * WIRE * WIRE);
      const feeds = { [input]: new ort.Tensor('uint8', data, [size, 1, WIRE, WIRE]) };
      let best = 0;
      for (const sessions of layouts) {
        let next = 0;
        const calls = await rate(
          () => (sessions[next++ % sessions.length] as ort.InferenceSession).run(feeds),
          sessions.length,
          seconds / 6,
        );
        best = Math.max(best, calls * size);
      }
      (rates[size] ??= []).push(best);
    }
  }
  await Promise.all(layouts.flat().map((s) => s.release()));
  const out: Record<number, number> = {};
  for (const [size, r] of Object.entries(rates)) out[Number(size)] = [...r].sort((a, b) => a - b)[1] ?? 0;
  return out;
}

/** CPU ms (user + system of the process: libvips' and libuv's threads included) per call of `work`, one at a time. */
async function cpuPerCall(work: () => Promise<unknown>, seconds: number): Promise<number> {
  for (let i = 0; i < 5; i += 1) await work();
  const until = performance.now() + seconds * 1000;
  const start = process.cpuUsage();
  let calls = 0;
  while (performance.now() < until || calls < 10) {
    await work();
    calls += 1;
  }
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000 / calls;
}

/** The native floor: what one image costs the native libraries alone, nothing around them. */
async function floor(args: Args): Promise<{ decode: Record<string, number>; ort: Record<string, Record<number, number>> }> {
  const decode: Record<string, number> = {};
  for (const file of args.decode) {
    const bytes = readFileSync(file);
    decode[file] = await cpuPerCall(() => toWireImage(bytes), args.seconds / 2);
  }
  const perModel: Record<string, Record<number, number>> = {};
  for (const model of args.ort) {
    const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1 });
    const input = session.inputNames[0] ?? 'image';
    perModel[model] = {};
    for (const size of args.batches) {
      const data = new Uint8Array(size * WIRE * WIRE).map((_, i) => (i * 31) % 251);
      const feeds = { [input]: new ort.Tensor('uint8', data, [size, 1, WIRE, WIRE]) };
      (perModel[model] as Record<number, number>)[size] = (await cpuPerCall(() => session.run(feeds), args.seconds / args.batches.length)) / size;
    }
    await session.release();
  }
  return { decode, ort: perModel };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const cores = availableParallelism();
  const decode: Record<string, number> = {};
  for (const file of args.decode) {
    const bytes = readFileSync(file);
    decode[file] = await rate(() => wireImage(bytes), cores * 2, args.seconds);
  }
  const raw: Record<string, { byBatch: Record<number, number>; best: number; bestBatch: number }> = {};
  for (const model of args.ort) {
    const byBatch = await rawOrt(model, args.batches, args.seconds);
    const [bestBatch, best] = Object.entries(byBatch).reduce((a, b) => (b[1] > a[1] ? b : a), ['0', 0]);
    raw[model] = { byBatch, best, bestBatch: Number(bestBatch) };
  }
  // Last, on a process that has done nothing else for a while: CPU per image, one at a time.
  const native = await floor(args);
  process.stdout.write(`${JSON.stringify({ cores, vips: sharp.versions.vips, decode, ort: raw, floor: native })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`ceilings failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
