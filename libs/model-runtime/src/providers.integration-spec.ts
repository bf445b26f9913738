/** The provider names Thorax accepts against what the real onnxruntime-node binding offers. */
import * as ort from 'onnxruntime-node';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  EXECUTION_PROVIDERS,
  explainProviderFailure,
  ortBinaryDirectory,
  providerConfigError,
  UNSUPPORTED_PROVIDERS,
} from './providers';

describe('execution providers', () => {
  it('accepts exactly the providers this onnxruntime-node build offers on Linux x64', () => {
    const offered = ort.listSupportedBackends().map((b) => b.name);
    expect([...EXECUTION_PROVIDERS].sort()).toEqual([...offered].sort());
    for (const name of Object.keys(UNSUPPORTED_PROVIDERS)) expect(offered).not.toContain(name);
  });

  it('finds libonnxruntime.so.1 where the provider libraries must go', async () => {
    const { existsSync } = await import('node:fs');
    expect(existsSync(path.join(ortBinaryDirectory(), 'libonnxruntime.so.1'))).toBe(true);
  });

  it('refuses openvino and unknown names in the configuration, naming the reason', () => {
    expect(providerConfigError('cuda')).toBeNull();
    expect(providerConfigError('cpu')).toBeNull();
    expect(providerConfigError('openvino')).toMatch(
      /^openvino: no onnxruntime-node 1\.30 build can load the OpenVINO execution provider .*docs\/inference\.md.*; expected cuda, tensorrt, webgpu, cpu$/,
    );
    expect(providerConfigError('gpu')).toBe('unknown execution provider "gpu"; expected cuda, tensorrt, webgpu, cpu');
  });

  it('names the missing CUDA provider libraries and the install script', async () => {
    const empty = await mkdtemp(path.join(tmpdir(), 'thorax-ort-'));
    try {
      const reason = explainProviderFailure(
        'cuda',
        'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library',
        empty,
      );
      expect(reason).toBe(
        `the CUDA provider libraries are not installed (no libonnxruntime_providers_cuda.so in ${empty}; ` +
          'scripts/cuda-provider.sh install, or the thorax:gpu image)',
      );
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it("passes other providers' failures through as ONNX Runtime words them (first line)", () => {
    expect(explainProviderFailure('webgpu', 'no adapter\nsecond line')).toBe('no adapter');
  });
});
