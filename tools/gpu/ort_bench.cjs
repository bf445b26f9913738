// DenseNet-121 on ONNX Runtime's CUDA provider from Node.js, for tools/gpu/bench.sh:
//   raw:  one onnxruntime-node session, batches run back to back (the ceiling);
//   pool: the inference service's runtime (libs/model-runtime InferencePool: worker threads,
//         warm-up, transfer of pixel buffers), `workers` sessions with 2 batches in flight each.
// Usage: node ort_bench.cjs <raw|pool> <MODEL_DIR> [batch] [seconds] [workers]. One JSON line out.
'use strict';
const path = require('node:path');

const [mode, modelDir, batchArg = '256', secondsArg = '10', workersArg = '2'] = process.argv.slice(2);
const batch = Number(batchArg);
const seconds = Number(secondsArg);
const workers = Number(workersArg);
// cuda on the GPU machine; cpu only to try the script itself on a machine without one.
const provider = process.env.BENCH_PROVIDER ?? 'cuda';
const dist = path.resolve(process.env.THORAX_DIST ?? path.join(__dirname, '.bundle/dist'));
const runtime = require(path.join(dist, 'libs/model-runtime/src/index.js'));
const ort = require(require.resolve('onnxruntime-node', { paths: [path.join(dist, 'libs/model-runtime/src')] }));

function images(count, width, height) {
  const out = [];
  for (let i = 0; i < count; i += 1) out.push(new Uint8Array(width * height).map((_, p) => (p * 7 + i) % 256));
  return out;
}

async function raw(artifact) {
  const { width, height } = artifact.metadata.input;
  const session = await ort.InferenceSession.create(artifact.bytes, {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
  });
  const pixels = new Uint8Array(batch * width * height);
  images(batch, width, height).forEach((image, i) => pixels.set(image, i * width * height));
  const feeds = { [artifact.metadata.input.name]: new ort.Tensor('uint8', pixels, [batch, 1, height, width]) };
  for (let i = 0; i < 3; i += 1) await session.run(feeds);
  let runs = 0;
  const started = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < seconds) {
    await session.run(feeds);
    runs += 1;
    elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  }
  await session.release();
  return { what: `onnxruntime-node-${provider}`, batch, images: runs * batch, seconds: elapsed };
}

async function pool(artifact) {
  const { width, height } = artifact.metadata.input;
  const events = [];
  const p = await runtime.InferencePool.start(artifact, {
    workers,
    intraOpThreads: 1,
    providers: [provider],
    warmUpBatchSizes: [batch],
    onProviderEvent: (e) => events.push(e),
  });
  if (p.provider !== provider) throw new Error(`pool runs on ${p.provider}: ${JSON.stringify(events)}`);
  const source = images(batch, width, height);
  let done = 0;
  const started = process.hrtime.bigint();
  const elapsedS = () => Number(process.hrtime.bigint() - started) / 1e9;
  // Each lane keeps one batch in flight; 2 lanes per worker so a worker never waits for the next hand-off.
  const lane = async () => {
    while (elapsedS() < seconds) {
      await p.classify(source.map((image) => image.slice()));
      done += batch;
    }
  };
  await Promise.all(Array.from({ length: workers * 2 }, lane));
  const elapsed = elapsedS();
  await p.close();
  return { what: `thorax-inference-pool-${provider}`, batch, workers, images: done, seconds: elapsed };
}

(async () => {
  const artifact = await runtime.loadModelArtifact(modelDir);
  const result = mode === 'raw' ? await raw(artifact) : await pool(artifact);
  result.imgPerSec = Math.round((result.images / result.seconds) * 10) / 10;
  result.seconds = Math.round(result.seconds * 1000) / 1000;
  console.log(JSON.stringify(result));
})().catch((error) => {
  console.error(`ort_bench ${mode}: ${error.stack ?? error}`);
  process.exit(1);
});
