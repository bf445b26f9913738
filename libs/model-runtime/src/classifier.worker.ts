/**
 * Worker thread that owns one ONNX Runtime session. `session.run()` blocks its thread for the
 * whole inference, so sessions live here and the service's main thread stays free for Kafka
 * heartbeats, HTTP, gRPC and /metrics.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Classifier } from './classifier';
import type { ModelArtifact } from './model-directory';
import type { WorkerReply, WorkerRequest, WorkerSetup } from './worker-protocol';

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('classifier.worker must run as a worker thread');
  const setup = workerData as WorkerSetup;
  const artifact: ModelArtifact = { ...setup.artifact, bytes: Buffer.from(setup.bytes) };
  const events: WorkerReply[] = [];
  let classifier: Classifier;
  try {
    classifier = await Classifier.create(artifact, {
      providers: setup.providers,
      intraOpThreads: setup.intraOpThreads,
      onProviderEvent: (e) => events.push({ kind: 'provider', ...e }),
    });
  } catch (error) {
    for (const e of events) port.postMessage(e);
    port.postMessage({ kind: 'failed', message: (error as Error).message } satisfies WorkerReply);
    return;
  }
  for (const e of events) port.postMessage(e);
  port.postMessage({ kind: 'ready', provider: classifier.provider } satisfies WorkerReply);

  port.on('message', (request: WorkerRequest) => {
    if (request.kind === 'close') {
      void classifier.release().finally(() => port.close());
      return;
    }
    const { width, height } = classifier.inputSize;
    const pixels = width * height;
    const input = new Uint8Array(request.pixels);
    const images = Array.from({ length: request.count }, (_, i) => input.subarray(i * pixels, (i + 1) * pixels));
    const started = process.hrtime.bigint();
    const run = setup.maps ? classifier.classifyWithMaps(images) : classifier.classify(images).then((scores) => ({ scores, maps: null }));
    run.then(
      ({ scores: rows, maps }) => {
        const labels = classifier.metadata.labels.length;
        const out = new Float32Array(rows.length * labels);
        rows.forEach((row, i) => out.set(row, i * labels));
        const perImage = maps?.[0]?.length ?? 0;
        const packedMaps = maps ? new Float32Array(maps.length * perImage) : null;
        maps?.forEach((map, i) => packedMaps?.set(map, i * perImage));
        const runMs = Number(process.hrtime.bigint() - started) / 1e6;
        const reply: WorkerReply = { kind: 'result', id: request.id, scores: out.buffer, maps: packedMaps?.buffer ?? null, runMs };
        port.postMessage(reply, packedMaps ? [out.buffer, packedMaps.buffer] : [out.buffer]);
      },
      (error: Error) =>
        port.postMessage({ kind: 'error', id: request.id, message: error.message } satisfies WorkerReply),
    );
  });
}

void main();
