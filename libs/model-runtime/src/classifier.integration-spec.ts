/** ONNX Runtime with the real model file the services ship (models/thorax-tiny-cnn). */
import path from 'node:path';
import { CHESTXRAY14_LABELS } from '@thorax/contracts';
import { Classifier } from './classifier';
import { loadModelArtifact, type ModelArtifact } from './model-directory';
import { cudaProviderInstalled } from './providers';

const MODEL_DIR = path.resolve(__dirname, '../../../models/thorax-tiny-cnn');

describe('Classifier on the committed model', () => {
  let artifact: ModelArtifact;
  let classifier: Classifier;
  const events: { provider: string; outcome: string; reason?: string }[] = [];

  beforeAll(async () => {
    artifact = await loadModelArtifact(MODEL_DIR);
    classifier = await Classifier.create(artifact, {
      providers: ['coreml', 'cuda', 'cpu'],
      intraOpThreads: 1,
      onProviderEvent: (e) => events.push(e),
    });
  });

  afterAll(() => classifier.release());

  it('reads the model contract from the file itself', () => {
    expect(artifact.metadata.labels).toEqual([...CHESTXRAY14_LABELS]);
    expect(artifact.metadata.thresholds).toHaveLength(14);
    expect(artifact.metadata.input).toMatchObject({ dtype: 'uint8', height: 256, width: 256 });
    expect(artifact.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('skips a provider the runtime does not offer, says why CUDA did not load, and falls back to CPU', () => {
    expect(events.map((e) => `${e.provider}:${e.outcome}`)).toEqual(['coreml:skipped', 'cuda:failed', 'cpu:active']);
    expect(events[0]?.reason).toMatch(/^not offered by this onnxruntime-node build \(offers: cpu, webgpu, cuda, tensorrt\)$/);
    expect(classifier.provider).toBe('cpu');
    // No machine that runs these tests has an NVIDIA driver. Without scripts/cuda-provider.sh install
    // the provider's libraries are absent; with it, everything loads except the driver's libcuda.so.1.
    const cuda = events[1]?.reason ?? '';
    if (cudaProviderInstalled()) {
      expect(cuda).toBe('no NVIDIA driver: libcuda.so.1 is not on the library path (the GPU node runtime mounts it)');
    } else {
      expect(cuda).toMatch(
        /^the CUDA provider libraries are not installed \(no libonnxruntime_providers_cuda\.so in .*onnxruntime-node\/bin\/napi-v6\/linux\/x64; scripts\/cuda-provider\.sh install, or the thorax:gpu image\)$/,
      );
    }
  });

  it('gives probabilities in [0, 1], identical per image whether batched or not', async () => {
    const a = new Uint8Array(256 * 256).map((_, i) => (i * 7) % 256);
    const b = new Uint8Array(256 * 256).fill(128);
    const [batchA, batchB] = await classifier.classify([a, b]);
    const [singleA] = await classifier.classify([a]);
    const [singleB] = await classifier.classify([b]);
    for (const row of [batchA, batchB]) {
      expect(row).toHaveLength(14);
      for (const p of row ?? []) {
        expect(p).toBeGreaterThanOrEqual(0);
        expect(p).toBeLessThanOrEqual(1);
      }
    }
    for (let i = 0; i < 14; i += 1) {
      expect(batchA?.[i]).toBeCloseTo(singleA?.[i] ?? -1, 5);
      expect(batchB?.[i]).toBeCloseTo(singleB?.[i] ?? -1, 5);
    }
    // The model reacts to its input: two different images do not give identical scores.
    expect(Array.from(singleA ?? [])).not.toEqual(Array.from(singleB ?? []));
  });

  it('refuses an image of the wrong size', async () => {
    await expect(classifier.classify([new Uint8Array(100)])).rejects.toThrow(/expected 65536/);
  });

  it('returns the class activation maps of the same run, which explain the probabilities', async () => {
    const cam = artifact.metadata.cam;
    expect(cam).toMatchObject({ name: 'cam', shape: ['batch', 14, 7, 7], units: 'logit', region: { top: 16, left: 16, height: 224, width: 224 } });
    const images = [new Uint8Array(256 * 256).map((_, i) => (i * 7) % 256), new Uint8Array(256 * 256).fill(90)];
    const { scores, maps } = await classifier.classifyWithMaps(images);
    expect(maps).toHaveLength(2);
    const plain = await classifier.classify(images);
    images.forEach((_, n) => {
      expect(maps?.[n]).toHaveLength(14 * 49);
      for (let k = 0; k < 14; k += 1) {
        const cells = maps?.[n]?.subarray(k * 49, (k + 1) * 49) ?? new Float32Array(49);
        const logit = cells.reduce((a, b) => a + b, 0) / 49 + (cam?.bias[k] ?? Number.NaN);
        expect(1 / (1 + Math.exp(-logit))).toBeCloseTo(scores[n]?.[k] ?? -1, 5);
        // Asking for the maps does not change the probabilities.
        expect(scores[n]?.[k]).toBeCloseTo(plain[n]?.[k] ?? -1, 6);
      }
    });
  });
});
