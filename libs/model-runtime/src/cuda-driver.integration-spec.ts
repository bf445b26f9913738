/**
 * The real CUDA provider (scripts/cuda-provider.sh install) with a driver that has no device, or
 * one too old for CUDA 13: fixtures/stub-cuda-driver stands in for libcuda.so.1, so the provider,
 * the CUDA runtime and ONNX Runtime run their real start-up and fail as on such a GPU node. Each
 * case runs in a child process (LD_LIBRARY_PATH is read at start). Without the provider installed
 * (CI installs none: 1.5 GB) these cases are skipped; the absent-provider case is in
 * classifier.integration-spec.ts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cudaProviderInstalled } from './providers';

jest.setTimeout(120_000);

const STUB = path.resolve(__dirname, '../fixtures/stub-cuda-driver/stub.c');
const RUNTIME = path.resolve(__dirname, '../../../dist/libs/model-runtime/src/index.js');
const MODEL_DIR = path.resolve(__dirname, '../../../models/thorax-tiny-cnn');
const compiler = spawnSync('cc', ['--version']).status === 0;
const run = cudaProviderInstalled() && compiler ? it : it.skip;

/** Classifier over the committed model with cuda,cpu, in a child whose libcuda.so.1 is the stub. */
function classifyWithDriver(driverVersion: number): {
  provider: string;
  events: { provider: string; outcome: string; reason?: string }[];
  labels: number;
} {
  const dir = mkdtempSync(path.join(tmpdir(), 'thorax-stub-driver-'));
  try {
    execFileSync('cc', [
      '-shared',
      '-fPIC',
      `-DDRIVER_VERSION=${driverVersion}`,
      '-o',
      path.join(dir, 'libcuda.so.1'),
      STUB,
    ]);
    const script = `
      const { Classifier, loadModelArtifact } = require(${JSON.stringify(RUNTIME)});
      (async () => {
        const events = [];
        const artifact = await loadModelArtifact(${JSON.stringify(MODEL_DIR)});
        const classifier = await Classifier.create(artifact, {
          providers: ['cuda', 'cpu'], intraOpThreads: 1, onProviderEvent: (e) => events.push(e) });
        const [scores] = await classifier.classify([new Uint8Array(256 * 256).fill(90)]);
        console.log(JSON.stringify({ provider: classifier.provider, events, labels: scores.length }));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const out = execFileSync(process.execPath, ['-e', script], {
      env: { ...process.env, LD_LIBRARY_PATH: dir },
      encoding: 'utf8',
    });
    return JSON.parse(out.trim().split('\n').pop() ?? '{}');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('CUDA provider installed, GPU node without a usable device (stub driver)', () => {
  run('says no CUDA device is visible, with the CUDA error, and serves on CPU', () => {
    const result = classifyWithDriver(13000);
    expect(result.provider).toBe('cpu');
    expect(result.labels).toBe(14);
    expect(result.events).toEqual([
      {
        provider: 'cuda',
        outcome: 'failed',
        reason:
          'no CUDA device visible to this process (driver present): CUDA failure 100: no CUDA-capable device is detected',
      },
      { provider: 'cpu', outcome: 'active' },
    ]);
  });

  run('says the driver is older than CUDA 13 needs, and serves on CPU', () => {
    const result = classifyWithDriver(12000);
    expect(result.provider).toBe('cpu');
    expect(result.events[0]).toEqual({
      provider: 'cuda',
      outcome: 'failed',
      reason:
        'the NVIDIA driver is older than the CUDA 13 runtime needs (driver 580 or later): ' +
        'CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version',
    });
  });
});
