import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import {
  NIH_CHESTXRAY14_DATA,
  provenanceNote,
  SYNTHETIC_DATA,
  type TrainingProvenance,
  UNKNOWN_DATA,
} from '@thorax/contracts';
import { z } from 'zod';

/** Field numbers of onnx.ModelProto (onnx/onnx.proto) read here. */
const MODEL_PROTO = { producerName: 2, metadataProps: 14 } as const;

/**
 * Reads `metadata_props` (and the producer name) from a serialised ONNX ModelProto without
 * loading the graph: ONNX Runtime's Node binding does not expose custom metadata.
 */
export function readOnnxMetadataProps(model: Uint8Array): { producerName: string; props: Record<string, string> } {
  const reader = new BinaryReader(model);
  const props: Record<string, string> = {};
  let producerName = '';
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === MODEL_PROTO.metadataProps && wireType === WireType.LengthDelimited) {
      const entry = new BinaryReader(reader.bytes());
      let key = '';
      let value = '';
      while (entry.pos < entry.len) {
        const [f, w] = entry.tag();
        if (f === 1 && w === WireType.LengthDelimited) key = entry.string();
        else if (f === 2 && w === WireType.LengthDelimited) value = entry.string();
        else entry.skip(w);
      }
      props[key] = value;
    } else if (field === MODEL_PROTO.producerName && wireType === WireType.LengthDelimited) {
      producerName = reader.string();
    } else {
      reader.skip(wireType);
    }
  }
  return { producerName, props };
}

const json = <T extends z.ZodType>(schema: T) =>
  z
    .string()
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'not valid JSON' });
        return z.NEVER;
      }
    })
    .pipe(schema);

const DATA_SLUG = /^[a-z0-9][a-z0-9._-]*$/;

const inputSpec = z.object({
  name: z.string().min(1),
  dtype: z.literal('uint8'),
  layout: z.literal('NCHW'),
  channels: z.literal(1),
  height: z.number().int().positive(),
  width: z.number().int().positive(),
  pixelFormat: z.literal('grey8'),
});

const outputSpec = z.object({ name: z.string().min(1), activation: z.literal('sigmoid') });

/**
 * `thorax.outputs.cam`: the optional second output, class activation maps [batch, labels, h, w]
 * in logit units without the bias, covering `region` of the input image (docs/models.md).
 */
const camSpec = z.object({
  name: z.string().min(1),
  shape: z.tuple([z.string(), z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]),
  units: z.literal('logit'),
  bias: z.array(z.number()),
  region: z.object({
    top: z.number().int().min(0),
    left: z.number().int().min(0),
    height: z.number().int().positive(),
    width: z.number().int().positive(),
  }),
});

export type CamSpec = z.infer<typeof camSpec>;

/** The Thorax model contract as it lives in an ONNX file's metadata_props (thorax.model.v1). */
const thoraxMetadataSchema = z
  .object({
    'thorax.schema': z.literal('thorax.model.v1'),
    'thorax.model.name': z.string().min(1),
    'thorax.model.version': z.string().min(1),
    'thorax.labels': json(z.array(z.string().min(1)).min(1)),
    'thorax.thresholds': json(z.array(z.number().min(0).max(1)).min(1)),
    'thorax.input': json(inputSpec),
    'thorax.output': json(outputSpec),
    'thorax.preprocessing': json(z.unknown()).optional(),
    'thorax.training': json(z.unknown()).optional(),
    'thorax.auroc.validation': json(z.record(z.string(), z.number().nullable())).optional(),
    'thorax.outputs.cam': json(camSpec).optional(),
    // Optional overrides of the provenance derived from thorax.training (docs/contract.md).
    'thorax.training.data': z
      .string()
      .regex(DATA_SLUG, 'lower-case slug such as synthetic or nih-chestxray14')
      .max(64)
      .optional(),
    'thorax.training.clinical': z.enum(['true', 'false']).optional(),
  })
  .refine((m) => m['thorax.labels'].length === m['thorax.thresholds'].length, {
    message: 'thorax.labels and thorax.thresholds differ in length',
  })
  .refine((m) => new Set(m['thorax.labels']).size === m['thorax.labels'].length, { message: 'duplicate labels' })
  .superRefine((m, ctx) => {
    const cam = m['thorax.outputs.cam'];
    if (!cam) return;
    const labels = m['thorax.labels'].length;
    const problem =
      cam.shape[1] !== labels || cam.bias.length !== labels
        ? `maps and bias must have one entry per label (${labels})`
        : cam.region.top + cam.region.height > m['thorax.input'].height ||
            cam.region.left + cam.region.width > m['thorax.input'].width
          ? 'region must lie inside the input image'
          : cam.name === m['thorax.output'].name
            ? 'must name an output other than the probabilities'
            : null;
    if (problem) ctx.addIssue({ code: 'custom', path: ['thorax.outputs.cam'], message: problem });
  });

export interface ModelMetadata {
  name: string;
  version: string;
  labels: string[];
  thresholds: number[];
  input: z.infer<typeof inputSpec>;
  output: z.infer<typeof outputSpec>;
  validationAuroc: Record<string, number | null>;
  /** The class activation maps output, when the model has one (older files do not). */
  cam: CamSpec | null;
  /** What the model was trained on; carried into every findings event. */
  provenance: TrainingProvenance;
  raw: Record<string, string>;
}

export class ModelContractError extends Error {
  override readonly name = 'ModelContractError';
}

export function parseModelMetadata(props: Record<string, string>): ModelMetadata {
  const parsed = thoraxMetadataSchema.safeParse(props);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '(metadata)'}: ${i.message}`).join('; ');
    throw new ModelContractError(`model metadata does not follow thorax.model.v1: ${detail}`);
  }
  const m = parsed.data;
  return {
    name: m['thorax.model.name'],
    version: m['thorax.model.version'],
    labels: m['thorax.labels'],
    thresholds: m['thorax.thresholds'],
    input: m['thorax.input'],
    output: m['thorax.output'],
    validationAuroc: m['thorax.auroc.validation'] ?? {},
    cam: m['thorax.outputs.cam'] ?? null,
    provenance: trainingProvenance(m['thorax.training'], m['thorax.training.data'], m['thorax.training.clinical']),
    raw: props,
  };
}

/**
 * The provenance of a model: `thorax.training.data` when the file states it, else derived from
 * the dataset the trainer recorded in `thorax.training` (kind `synthetic` → synthetic; an NIH
 * layout or a ChestX-ray14 name → nih-chestxray14; another name → its slug; nothing → unknown).
 * A model counts as clinical only when it says so and was not trained on synthetic images.
 */
export function trainingProvenance(training: unknown, data?: string, clinical?: 'true' | 'false'): TrainingProvenance {
  const dataset = isRecord(training) && isRecord(training['dataset']) ? training['dataset'] : {};
  const name = typeof dataset['name'] === 'string' && dataset['name'].trim() !== '' ? dataset['name'].trim() : null;
  const kind = typeof dataset['kind'] === 'string' ? dataset['kind'].trim().toLowerCase() : '';
  const resolved = data ?? derivedData(kind, name);
  const provenance = { data: resolved, clinical: clinical === 'true' && resolved !== SYNTHETIC_DATA };
  return { ...provenance, dataset: name?.slice(0, 256) ?? null, note: provenanceNote(provenance) };
}

function derivedData(kind: string, name: string | null): string {
  if (kind === SYNTHETIC_DATA) return SYNTHETIC_DATA;
  if (kind === 'nih-layout' || (name !== null && /chest[-_ ]?x[-_ ]?ray[-_ ]?14|\bnih\b/i.test(name)))
    return NIH_CHESTXRAY14_DATA;
  const slug = (name ?? kind)
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+|-+$/g, '')
    .slice(0, 64);
  return slug === '' ? UNKNOWN_DATA : slug;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
