import type { Request } from 'express';
import { ResultsApiError } from '../api/api-error';

/** Largest feedback request body, bytes (a verdict and a 1000-character comment fit easily). */
export const FEEDBACK_BODY_LIMIT = 16 * 1024;

/**
 * Reads a small JSON request body (services run without a global body parser). INVALID_ARGUMENT
 * for another media type, a body over `limit` bytes or invalid JSON.
 */
export async function readJsonBody(req: Request, limit = FEEDBACK_BODY_LIMIT): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') throw new ResultsApiError('INVALID_ARGUMENT', 'expected Content-Type: application/json');
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) throw new ResultsApiError('INVALID_ARGUMENT', `the body is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new ResultsApiError('INVALID_ARGUMENT', `the body is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new ResultsApiError('INVALID_ARGUMENT', 'the body is not valid JSON');
  }
}
