import {
  CHESTXRAY14_LABELS,
  decodeFindingsEvent,
  PixelFormat,
  type PreprocessedImage,
  Priority,
  ThoraxError,
} from '@thorax/contracts';
import type { OutgoingRecord, Publisher } from '@thorax/kafka';
import { createLogger, ThoraxMetrics } from '@thorax/observability';
import { loadConfig } from '@thorax/config';
import { inferenceConfigSchema } from '../config';
import type { ModelSlot } from '../model/model-slot';
import type { ModelService } from '../model/model.service';
import type { ReviewImagesService } from '../review/review-images.service';
import { InferenceService } from './inference.service';

const SYNTHETIC = {
  data: 'synthetic',
  clinical: false,
  dataset: 'thorax-synthetic-cxr',
  note: 'Demonstration model trained on synthetic images; not for clinical use.',
};

function slot(
  role: ModelSlot['role'],
  version: string,
  classify: (pixels: Uint8Array, urgent: boolean) => Promise<Float32Array>,
): ModelSlot {
  return {
    role,
    version,
    classify,
    classifyWithMap: async (pixels: Uint8Array, urgent: boolean) => ({ probabilities: await classify(pixels, urgent), map: null }),
    pool: {
      inputSize: { width: 256, height: 256 },
      metadata: {
        name: 'm',
        version,
        labels: [...CHESTXRAY14_LABELS],
        thresholds: CHESTXRAY14_LABELS.map(() => 0.5),
        provenance: SYNTHETIC,
      },
      sha256: 'a'.repeat(64),
      provider: 'cpu',
    },
  } as unknown as ModelSlot;
}

const scores = (value: number) => async () => new Float32Array(14).fill(value);

function setup(primary: ModelSlot, shadow: ModelSlot | null, review?: ReviewImagesService) {
  const published: OutgoingRecord[] = [];
  const publisher: Publisher = { publish: async (records) => void published.push(...records) };
  const models = { route: () => primary, shadow } as unknown as ModelService;
  const config = loadConfig(inferenceConfigSchema, {});
  const service = new InferenceService(
    config,
    publisher,
    createLogger({ service: 't', version: '0', level: 'silent' }),
    models,
    new ThoraxMetrics('inference'),
    review ?? ({ enabled: false } as ReviewImagesService),
  );
  return { service, published };
}

const forward: Record<string, string> = {};
const image = (overrides: Partial<PreprocessedImage> = {}): PreprocessedImage => ({
  id: 'img-1',
  study: undefined,
  priority: Priority.PRIORITY_STAT,
  receivedAt: new Date(),
  width: 256,
  height: 256,
  pixelFormat: PixelFormat.PIXEL_FORMAT_GREY8,
  pixels: Buffer.alloc(256 * 256),
  source: undefined,
  preprocessing: 'thorax.wire.v2',
  ...overrides,
});

describe('InferenceService', () => {
  it('publishes the primary findings and sends STAT images ahead in the batcher', async () => {
    const urgency: boolean[] = [];
    const { service, published } = setup(
      slot('primary', '2', async (_p, urgent) => {
        urgency.push(urgent);
        return new Float32Array(14).fill(0.7);
      }),
      null,
    );
    const event = await service.infer(image(), forward);
    expect(urgency).toEqual([true]);
    expect(published.map((r) => r.topic)).toEqual(['thorax.findings.v1']);
    expect(event.positives).toHaveLength(14);
    expect(decodeFindingsEvent(published[0]?.value ?? null).model?.version).toBe('2');
    // Every event says what the model was trained on.
    expect(decodeFindingsEvent(published[0]?.value ?? null).model?.provenance).toEqual(SYNTHETIC);
  });

  it('runs the shadow on the same image, publishes it only to the shadow topic, and never lets it fail the primary', async () => {
    const ok = setup(slot('primary', '1', scores(0.1)), slot('shadow', '2', scores(0.9)));
    await ok.service.infer(image(), forward);
    expect(ok.published.map((r) => [r.topic, r.headers?.['thorax-model-role'] ?? 'primary'])).toEqual([
      ['thorax.findings.v1', 'primary'],
      ['thorax.findings.shadow.v1', 'shadow'],
    ]);
    expect(decodeFindingsEvent(ok.published[0]?.value ?? null).positives).toEqual([]);

    const broken = setup(
      slot('primary', '1', scores(0.1)),
      slot('shadow', '2', async () => Promise.reject(new Error('boom'))),
    );
    await expect(broken.service.infer(image(), forward)).resolves.toMatchObject({ status: 'ok' });
    expect(broken.published.map((r) => r.topic)).toEqual(['thorax.findings.v1']);
  });

  it('runs the shadow once per image however often the primary is retried', async () => {
    let primaryCalls = 0;
    let shadowCalls = 0;
    const { service, published } = setup(
      slot('primary', '1', async () => {
        primaryCalls += 1;
        if (primaryCalls < 3) throw new Error('worker retired after a batch timeout');
        return new Float32Array(14).fill(0.2);
      }),
      slot('shadow', '2', async () => {
        shadowCalls += 1;
        return new Float32Array(14).fill(0.8);
      }),
    );
    // What the consumer does with a transient INFERENCE_FAILED: handle the same record again.
    for (let attempt = 1; attempt <= 2; attempt += 1) {
      await expect(service.infer(image(), forward)).rejects.toMatchObject({ code: 'INFERENCE_FAILED' });
    }
    await service.infer(image(), forward);
    expect(primaryCalls).toBe(3);
    expect(shadowCalls).toBe(1);
    expect(published.map((r) => r.topic)).toEqual(['thorax.findings.v1', 'thorax.findings.shadow.v1']);
  });

  it('classifies failures: wrong input size, model errors (retryable), NaN scores', async () => {
    const { service } = setup(slot('primary', '1', scores(0.5)), null);
    await expect(service.infer(image({ width: 224, height: 224 }), forward)).rejects.toMatchObject({
      code: 'MODEL_INPUT_MISMATCH',
    });
    const failing = setup(
      slot('primary', '1', async () => Promise.reject(new Error('session lost'))),
      null,
    );
    const error = await failing.service.infer(image(), forward).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ThoraxError);
    expect(error).toMatchObject({ code: 'INFERENCE_FAILED', transient: true });
    const nan = setup(slot('primary', '1', scores(Number.NaN)), null);
    await expect(nan.service.infer(image(), forward)).rejects.toMatchObject({ code: 'INFERENCE_FAILED' });
  });

  it('stores the review objects (wire image, activation maps) before it publishes the event that names them', async () => {
    const order: string[] = [];
    const asked: { pixels: number }[] = [];
    const activationMaps = {
      uri: 'file:///o/review/img-1/1/cam.bin',
      format: 'thorax.cam.v1',
      labels: [...CHESTXRAY14_LABELS],
      height: 7,
      width: 7,
      region: { top: 16, left: 16, height: 224, width: 224 },
    } as const;
    const review = {
      enabled: true,
      keep: async (args: { pixels: Uint8Array }) => {
        asked.push({ pixels: args.pixels.length });
        order.push('stored');
        return { wireImage: { uri: 'file:///o/review/img-1/1/wire.png', width: 256, height: 256 }, activationMaps };
      },
    } as unknown as ReviewImagesService;
    const probabilities = CHESTXRAY14_LABELS.map((_, i) => (i === 1 ? 0.9 : 0.1));
    const { service, published } = setup(
      slot('primary', '1', async () => Float32Array.from(probabilities)),
      slot('shadow', '2', async () => Float32Array.from(probabilities)),
      review,
    );
    const publish = published.push.bind(published);
    published.push = (...records: OutgoingRecord[]) => {
      order.push(`published ${records[0]?.topic}`);
      return publish(...records);
    };
    const event = await service.infer(image(), forward);
    // Only the primary's findings are reviewed; the shadow's are not.
    expect(order).toEqual(['stored', 'published thorax.findings.v1', 'published thorax.findings.shadow.v1']);
    expect(asked).toEqual([{ pixels: 256 * 256 }]);
    expect(event.wireImage?.uri).toBe('file:///o/review/img-1/1/wire.png');
    const sent = decodeFindingsEvent(published[0]?.value ?? null);
    // Maps, not rendered heatmaps: results renders those on request.
    expect(sent.activationMaps).toEqual({ ...activationMaps, labels: [...CHESTXRAY14_LABELS] });
    expect(sent).not.toHaveProperty('heatmaps');
    const shadow = decodeFindingsEvent(published[1]?.value ?? null);
    expect(shadow).not.toHaveProperty('activationMaps');
    expect(shadow).not.toHaveProperty('wireImage');
  });
});
