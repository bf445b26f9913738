import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';

/**
 * Execution providers that onnxruntime-node 1.30's binding can append on Linux x64, by the names
 * INFERENCE_PROVIDERS uses (its session options know cpu, cuda, tensorrt and webgpu, nothing
 * else). See docs/inference.md "Execution providers".
 */
export const EXECUTION_PROVIDERS = ['cuda', 'tensorrt', 'webgpu', 'cpu'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/** Names that no build of this runtime can load, with the reason a configuration error gives. */
export const UNSUPPORTED_PROVIDERS: Readonly<Record<string, string>> = {
  openvino:
    'no onnxruntime-node 1.30 build can load the OpenVINO execution provider (its binding has no OpenVINO ' +
    'option and PyPI has no OpenVINO provider of version 1.30; see docs/inference.md "Execution providers")',
  dml: 'DirectML is a Windows provider; Thorax images are Linux',
  coreml: 'Core ML is a macOS provider; Thorax images are Linux',
};

/** Where onnxruntime-node keeps libonnxruntime.so.1, and where it looks for provider libraries. */
export function ortBinaryDirectory(): string {
  const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
  return path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

const CUDA_PROVIDER = 'libonnxruntime_providers_cuda.so';
const SHARED_PROVIDER = 'libonnxruntime_providers_shared.so';
const TENSORRT_PROVIDER = 'libonnxruntime_providers_tensorrt.so';
const INSTALL_HINT = 'scripts/cuda-provider.sh install, or the thorax:gpu image';

/** Whether the CUDA provider's libraries are beside libonnxruntime.so.1 (scripts/cuda-provider.sh). */
export function cudaProviderInstalled(directory = ortBinaryDirectory()): boolean {
  return existsSync(path.join(directory, CUDA_PROVIDER)) && existsSync(path.join(directory, SHARED_PROVIDER));
}

/**
 * Loads a shared library the way ONNX Runtime would (dlopen) and tells what stopped it: null when
 * it and all its dependencies load. Node rejects the library afterwards (it is no addon) and
 * unloads it again; the message then says it did not self-register, which means it loaded.
 */
function dlopenError(file: string): string | null {
  try {
    process.dlopen({ exports: {} }, file, constants.dlopen.RTLD_LAZY);
    return null;
  } catch (error) {
    const message = (error as Error).message;
    return /did not self-register|napi_register_module/i.test(message) ? null : message;
  }
}

/**
 * One line saying why an execution provider that onnxruntime-node offers could not start, for the
 * fallback log: the provider libraries absent, a dependency missing (the NVIDIA driver's
 * libcuda.so.1 above all), no device, or else ONNX Runtime's own message.
 */
export function explainProviderFailure(provider: string, ortMessage: string, directory = ortBinaryDirectory()): string {
  const ort = ortMessage.split('\n')[0]?.trim() ?? '';
  if (provider === 'cuda' || provider === 'tensorrt') {
    const library = provider === 'cuda' ? CUDA_PROVIDER : TENSORRT_PROVIDER;
    if (!existsSync(path.join(directory, library)) || !existsSync(path.join(directory, SHARED_PROVIDER))) {
      const how = provider === 'cuda' ? INSTALL_HINT : 'onnxruntime-gpu 1.30.0 and the TensorRT libraries';
      return `the ${provider === 'cuda' ? 'CUDA' : 'TensorRT'} provider libraries are not installed (no ${library} in ${directory}; ${how})`;
    }
    const loadError = dlopenError(path.join(directory, library));
    if (loadError && /libcuda\.so\.1/.test(loadError)) {
      return 'no NVIDIA driver: libcuda.so.1 is not on the library path (the GPU node runtime mounts it)';
    }
    if (loadError) return `a library the ${provider} provider needs does not load: ${loadError}`;
    // ONNX Runtime's message carries its call stack; "CUDA failure <n>: <text> ;" is the cause.
    const failure = /CUDA failure (\d+): ([^;]+?)\s*;/.exec(ort);
    const cause = failure ? `CUDA failure ${failure[1]}: ${failure[2]}` : ort;
    if (failure?.[1] === '100' || /no CUDA-capable device/i.test(ort)) {
      return `no CUDA device visible to this process (driver present): ${cause}`;
    }
    if (failure?.[1] === '35' || /driver version is insufficient/i.test(ort)) {
      return `the NVIDIA driver is older than the CUDA 13 runtime needs (driver 580 or later): ${cause}`;
    }
    return `the ${provider} provider loaded but did not start: ${cause}`;
  }
  return ort;
}

/** Why a name may not appear in INFERENCE_PROVIDERS, or null when it may (config validation). */
export function providerConfigError(name: string): string | null {
  if ((EXECUTION_PROVIDERS as readonly string[]).includes(name)) return null;
  const why = UNSUPPORTED_PROVIDERS[name];
  const known = `expected ${EXECUTION_PROVIDERS.join(', ')}`;
  return why ? `${name}: ${why}; ${known}` : `unknown execution provider ${JSON.stringify(name)}; ${known}`;
}
