'use strict';
// The co-located deployment (docs/operations.md "Co-located stages"): ingest, preprocess and
// inference in ONE process: `thorax pipeline` in the image, `THORAX_TOPOLOGY=pipeline npm start` on one machine.
//
// Each stage is the same service as when deployed alone (its config, HTTP port, /healthz, /readyz,
// /metrics), but the records of thorax.images.v1 and thorax.tensors.v1 are handed from stage to stage
// in memory (libs/kafka LocalTopics) instead of through Kafka: one Kafka hop (studies in, findings
// out) instead of three, and no copy of every image written to and read back from the broker twice.
// Ingest commits a study's offset only once its findings event is acknowledged by Kafka, so delivery
// stays at-least-once end to end. Results and everything outside read the same topics as ever.
//
// Ports: <SERVICE>_HTTP_PORT (default 8081, 8082, 8083); HTTP_PORT is ignored here (three servers).
// SIGTERM/SIGINT close the stages first to last (ingest drains its in-flight records through the
// others), within SHUTDOWN_TIMEOUT_MS.
const fs = require('node:fs');
const path = require('node:path');

const APP_ROOT = [path.resolve(__dirname, '..'), path.resolve(__dirname, '..', '..')].find((dir) =>
  fs.existsSync(path.join(dir, 'dist', 'apps', 'ingest', 'src', 'service.js')),
);
if (!APP_ROOT) {
  process.stderr.write('thorax pipeline: dist/ not found (build first: npm run build)\n');
  process.exit(1);
}
const dist = (...parts) => require(path.join(APP_ROOT, 'dist', ...parts));

// First to last; started last to first, so a stage's consumer exists before records reach it.
const STAGES = [
  { name: 'ingest', port: 8081 },
  { name: 'preprocess', port: 8082 },
  { name: 'inference', port: 8083 },
];
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;

function envOf(stage) {
  const env = { ...process.env };
  env.HTTP_PORT = process.env[`${stage.name.toUpperCase()}_HTTP_PORT`] || String(stage.port);
  return env;
}

async function main() {
  process.title = 'thorax-pipeline';
  const { launch } = dist('libs', 'observability', 'src', 'index.js');
  const { installLocalTopics } = dist('libs', 'kafka', 'src', 'index.js');
  const { TOPIC_NAMES } = dist('libs', 'config', 'src', 'index.js');
  installLocalTopics([process.env.TOPIC_IMAGES || TOPIC_NAMES.images, process.env.TOPIC_TENSORS || TOPIC_NAMES.tensors]);

  const apps = new Map();
  for (const stage of [...STAGES].reverse()) {
    const { [`${stage.name}Service`]: definition } = dist('apps', stage.name, 'src', 'service.js');
    apps.set(stage.name, await launch(definition, envOf(stage), { signals: false }));
  }

  let closing = false;
  const close = async (signal) => {
    if (closing) return;
    closing = true;
    const timeoutMs = Number(process.env.SHUTDOWN_TIMEOUT_MS) || DEFAULT_SHUTDOWN_TIMEOUT_MS;
    setTimeout(() => {
      process.stderr.write(`thorax pipeline: ${signal}: stages did not drain within ${timeoutMs} ms; exiting (uncommitted records are redelivered)\n`);
      process.exit(1);
    }, timeoutMs).unref();
    let status = 0;
    for (const stage of STAGES) {
      try {
        await apps.get(stage.name).close();
      } catch (error) {
        process.stderr.write(`thorax pipeline: closing ${stage.name} failed: ${error && error.stack}\n`);
        status = 1;
      }
    }
    process.exit(status);
  };
  process.once('SIGTERM', () => void close('SIGTERM'));
  process.once('SIGINT', () => void close('SIGINT'));
}

main().catch((error) => {
  process.stderr.write(`thorax pipeline: ${error && error.stack}\n`);
  process.exit(1);
});
