import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
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
  })
  .refine((m) => m['thorax.labels'].length === m['thorax.thresholds'].length, {
    message: 'thorax.labels and thorax.thresholds differ in length',
  })
  .refine((m) => new Set(m['thorax.labels']).size === m['thorax.labels'].length, { message: 'duplicate labels' });

export interface ModelMetadata {
  name: string;
  version: string;
  labels: string[];
  thresholds: number[];
  input: z.infer<typeof inputSpec>;
  output: z.infer<typeof outputSpec>;
  validationAuroc: Record<string, number | null>;
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
    raw: props,
  };
}
