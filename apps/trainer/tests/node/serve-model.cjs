// Loads a model directory exactly as the inference service does (libs/model-runtime, built to
// dist/: highest version directory, contract metadata read from the ONNX file, execution provider
// chosen from a list) and classifies raw wire images. Prints one JSON object.
//
//   node serve-model.cjs DIST_ROOT MODEL_DIR IMAGES_FILE COUNT
//
// IMAGES_FILE holds COUNT uint8 grey 256x256 images back to back.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

async function main() {
  const [distRoot, modelDir, imagesFile, countText] = process.argv.slice(2);
  const runtime = require(path.join(distRoot, 'libs', 'model-runtime', 'src', 'index.js'));
  const artifact = await runtime.loadModelArtifact(modelDir);
  const events = [];
  const classifier = await runtime.Classifier.create(artifact, {
    providers: ['cuda', 'cpu'],
    intraOpThreads: 1,
    onProviderEvent: (e) => events.push(`${e.provider}:${e.outcome}`),
  });
  const { width, height } = classifier.inputSize;
  const pixels = width * height;
  const bytes = fs.readFileSync(imagesFile);
  const count = Number(countText);
  if (bytes.length !== count * pixels) throw new Error(`expected ${count * pixels} bytes, got ${bytes.length}`);
  const images = [];
  for (let i = 0; i < count; i += 1) images.push(new Uint8Array(bytes.buffer, bytes.byteOffset + i * pixels, pixels));
  const rows = await classifier.classify(images);
  await classifier.release();
  process.stdout.write(
    JSON.stringify({
      path: artifact.path,
      sha256: artifact.sha256,
      name: artifact.metadata.name,
      version: artifact.metadata.version,
      labels: artifact.metadata.labels,
      thresholds: artifact.metadata.thresholds,
      provider: classifier.provider,
      providerEvents: events,
      probabilities: rows.map((row) => Array.from(row)),
    }),
  );
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
