import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import schema from './schemas/thorax.feedback.v1.schema.json';

export const FEEDBACK_SCHEMA_ID = 'thorax.feedback.v1';
export const feedbackEventJsonSchema: object = schema;

export const FEEDBACK_VERDICTS = ['agree', 'disagree'] as const;
export type FeedbackVerdict = (typeof FEEDBACK_VERDICTS)[number];

/** Longest reviewer comment, characters. */
export const FEEDBACK_COMMENT_MAX = 1000;

/** The thorax.feedback.v1 event (JSON Schema: schemas/thorax.feedback.v1.schema.json). */
export interface FeedbackEvent {
  schema: typeof FEEDBACK_SCHEMA_ID;
  /** Image id of the reviewed result (record key). */
  id: string;
  studyUid: string | null;
  model: { name: string; version: string; sha256: string };
  label: string;
  probability: number;
  threshold: number;
  positive: boolean;
  verdict: FeedbackVerdict;
  comment: string | null;
  /** Token subject (auth on), or the name the client gave / 'anonymous' (auth off). */
  reviewer: string;
  /** Grows by one with each change of the verdict or comment; consumers keep the highest. */
  revision: number;
  reviewedAt: string;
}

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
addFormats(ajv);
const validate = ajv.compile<FeedbackEvent>(schema);

export class FeedbackEventInvalidError extends Error {
  override readonly name = 'FeedbackEventInvalidError';
}

/** Throws FeedbackEventInvalidError unless the value is a valid thorax.feedback.v1 event. */
export function assertFeedbackEvent(value: unknown): asserts value is FeedbackEvent {
  if (!validate(value)) {
    const detail = (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'invalid'}`).join('; ');
    throw new FeedbackEventInvalidError(`not a valid ${FEEDBACK_SCHEMA_ID} event: ${detail}`);
  }
}

/** Validates and serialises a feedback event for Kafka (UTF-8 JSON). */
export function encodeFeedbackEvent(event: FeedbackEvent): Buffer {
  assertFeedbackEvent(event);
  return Buffer.from(JSON.stringify(event), 'utf8');
}

/** Parses and validates a Kafka record value. */
export function decodeFeedbackEvent(value: Buffer | null): FeedbackEvent {
  if (!value || value.length === 0) throw new FeedbackEventInvalidError('empty feedback record');
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (error) {
    throw new FeedbackEventInvalidError(`feedback record is not JSON: ${(error as Error).message}`);
  }
  assertFeedbackEvent(parsed);
  return parsed;
}
