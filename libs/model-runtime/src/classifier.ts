import * as ort from 'onnxruntime-node';
import type { ModelArtifact } from './model-directory';
import type { ModelMetadata } from './onnx-metadata';
import { explainProviderFailure } from './providers';

export interface ClassifierOptions {
  /** Ordered execution providers to try, e.g. ['cuda', 'cpu'] (see EXECUTION_PROVIDERS). */
  providers: string[];
  intraOpThreads: number;
  /** Receives one line per provider decision (which was skipped and why, which is active). */
  onProviderEvent?: (event: { provider: string; outcome: 'skipped' | 'failed' | 'active'; reason?: string }) => void;
}

/** Providers this onnxruntime-node build can run, by the names ONNX Runtime uses. */
export function availableProviders(): string[] {
  return ort.listSupportedBackends().map((b) => b.name);
}

/**
 * An ONNX Runtime session over a Thorax model: uint8 grey images in, per-label sigmoid
 * probabilities out, in the model's label order.
 */
// Provider load failures are reported once, structured, through onProviderEvent; ONNX Runtime's
// own coloured stderr line for them (process-wide logger) would only duplicate it.
ort.env.logLevel = 'fatal';

export class Classifier {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly metadata: ModelMetadata,
    readonly sha256: string,
    readonly provider: string,
  ) {}

  static async create(artifact: ModelArtifact, options: ClassifierOptions): Promise<Classifier> {
    const supported = new Set(availableProviders());
    const failures: string[] = [];
    for (const provider of options.providers) {
      if (!supported.has(provider)) {
        const reason = `not offered by this onnxruntime-node build (offers: ${[...supported].join(', ')})`;
        options.onProviderEvent?.({ provider, outcome: 'skipped', reason });
        failures.push(`${provider}: ${reason}`);
        continue;
      }
      try {
        const session = await ort.InferenceSession.create(artifact.bytes, {
          executionProviders: [provider],
          intraOpNumThreads: options.intraOpThreads,
          interOpNumThreads: 1,
          graphOptimizationLevel: 'all',
        });
        checkSignature(session, artifact.metadata);
        options.onProviderEvent?.({ provider, outcome: 'active' });
        return new Classifier(session, artifact.metadata, artifact.sha256, provider);
      } catch (error) {
        // ONNX Runtime says only "Failed to load shared library" when the CUDA provider or a library
        // it needs is missing: the reason names which, and whether the driver or a device is absent.
        const reason = explainProviderFailure(provider, (error as Error).message);
        options.onProviderEvent?.({ provider, outcome: 'failed', reason });
        failures.push(`${provider}: ${reason}`);
      }
    }
    throw new Error(`no execution provider could load ${artifact.path}: ${failures.join('; ')}`);
  }

  get inputSize(): { width: number; height: number } {
    return { width: this.metadata.input.width, height: this.metadata.input.height };
  }

  /** Whether the model has the class activation maps output (`thorax.outputs.cam`). */
  get hasMaps(): boolean {
    return this.metadata.cam !== null;
  }

  /** Runs one batch; each image is width*height uint8 pixels. Returns one row per image. */
  async classify(images: Uint8Array[]): Promise<Float32Array[]> {
    return (await this.run(images, false)).scores;
  }

  /**
   * Like `classify`, and also the class activation maps of the same run when the model has them
   * (`maps`: one Float32Array of labels*h*w per image, label-major; null without them).
   */
  async classifyWithMaps(images: Uint8Array[]): Promise<{ scores: Float32Array[]; maps: Float32Array[] | null }> {
    return this.run(images, this.hasMaps);
  }

  private async run(
    images: Uint8Array[],
    withMaps: boolean,
  ): Promise<{ scores: Float32Array[]; maps: Float32Array[] | null }> {
    const { width, height } = this.inputSize;
    const pixels = width * height;
    const batch = new Uint8Array(images.length * pixels);
    images.forEach((image, i) => {
      if (image.length !== pixels) throw new Error(`image ${i} has ${image.length} bytes, expected ${pixels}`);
      batch.set(image, i * pixels);
    });
    const input = new ort.Tensor('uint8', batch, [images.length, 1, height, width]);
    const cam = withMaps ? this.metadata.cam : null;
    const fetches = cam ? [this.metadata.output.name, cam.name] : [this.metadata.output.name];
    const outputs = await this.session.run({ [this.metadata.input.name]: input }, fetches);
    const output = outputs[this.metadata.output.name];
    if (!output) throw new Error(`model produced no ${this.metadata.output.name} output`);
    const labels = this.metadata.labels.length;
    const data = output.data as Float32Array;
    if (data.length !== images.length * labels)
      throw new Error(`output has ${data.length} values, expected ${images.length * labels}`);
    const scores = images.map((_, i) => data.slice(i * labels, (i + 1) * labels));
    if (!cam) return { scores, maps: null };
    const mapData = outputs[cam.name]?.data as Float32Array | undefined;
    const perImage = labels * cam.shape[2] * cam.shape[3];
    if (!mapData || mapData.length !== images.length * perImage)
      throw new Error(`${cam.name} has ${mapData?.length ?? 0} values, expected ${images.length * perImage}`);
    return { scores, maps: images.map((_, i) => mapData.slice(i * perImage, (i + 1) * perImage)) };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function checkSignature(session: ort.InferenceSession, metadata: ModelMetadata): void {
  if (!session.inputNames.includes(metadata.input.name)) {
    throw new Error(`graph inputs ${session.inputNames.join(',')} lack ${metadata.input.name}`);
  }
  for (const name of [metadata.output.name, ...(metadata.cam ? [metadata.cam.name] : [])]) {
    if (!session.outputNames.includes(name)) {
      throw new Error(`graph outputs ${session.outputNames.join(',')} lack ${name}`);
    }
  }
}
