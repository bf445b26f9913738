import { Inject, Injectable } from '@nestjs/common';
import { FEEDBACK_COMMENT_MAX, FEEDBACK_VERDICTS, type FeedbackEvent, type FeedbackVerdict } from '@thorax/contracts';
import { LOGGER, type Logger } from '@thorax/observability';
import { ResultsApiError } from '../api/api-error';
import { FindingsReader } from '../findings/findings-reader.service';
import { FEEDBACK_STORE, type FeedbackStore } from '../store/results-store.port';
import { FeedbackTopicPublisher } from './feedback-topic.publisher';

/** A verdict as the API receives it (POST /v1/findings/{id}/feedback). */
export interface FeedbackRequest {
  label: string;
  verdict: FeedbackVerdict;
  comment: string | null;
  modelVersion: string | undefined;
  /** Only without API authentication (with it, the token's subject is the reviewer). */
  reviewer: string | undefined;
}

export interface FeedbackResponse {
  feedback: FeedbackEvent;
  /** Whether this revision is on the feedback topic already (false: the relay sends it later). */
  published: boolean;
}

const REVIEWER = /^[A-Za-z0-9][A-Za-z0-9._@ -]{0,63}$/;

/** Validates a POST body; INVALID_ARGUMENT names the field. */
export function parseFeedbackBody(body: unknown): FeedbackRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ResultsApiError('INVALID_ARGUMENT', 'expected a JSON object { label, verdict, comment? }');
  }
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !['label', 'verdict', 'comment', 'modelVersion', 'reviewer'].includes(k));
  if (unknown.length > 0) throw new ResultsApiError('INVALID_ARGUMENT', `unknown field ${JSON.stringify(unknown[0])}`);
  if (typeof b['label'] !== 'string' || b['label'].length === 0) throw new ResultsApiError('INVALID_ARGUMENT', 'label is required');
  if (!FEEDBACK_VERDICTS.includes(b['verdict'] as FeedbackVerdict)) {
    throw new ResultsApiError('INVALID_ARGUMENT', `verdict must be one of ${FEEDBACK_VERDICTS.join(', ')}`);
  }
  const comment = b['comment'] ?? null;
  if (comment !== null && typeof comment !== 'string') throw new ResultsApiError('INVALID_ARGUMENT', 'comment must be a string');
  if (typeof comment === 'string' && comment.length > FEEDBACK_COMMENT_MAX) {
    throw new ResultsApiError('INVALID_ARGUMENT', `comment is longer than ${FEEDBACK_COMMENT_MAX} characters`);
  }
  const modelVersion = b['modelVersion'];
  if (modelVersion !== undefined && (typeof modelVersion !== 'string' || modelVersion.length === 0)) {
    throw new ResultsApiError('INVALID_ARGUMENT', 'modelVersion must be a non-empty string');
  }
  const reviewer = b['reviewer'];
  if (reviewer !== undefined && (typeof reviewer !== 'string' || !REVIEWER.test(reviewer))) {
    throw new ResultsApiError('INVALID_ARGUMENT', 'reviewer must be 1-64 letters, digits, spaces or ._@-');
  }
  const trimmed = typeof comment === 'string' ? comment.trim() : null;
  return {
    label: b['label'],
    verdict: b['verdict'] as FeedbackVerdict,
    comment: trimmed ? trimmed : null,
    modelVersion,
    reviewer,
  };
}

/**
 * Reviewers' verdicts: stored first (idempotent per image, model version, label and reviewer),
 * then published to the feedback topic; a publish that fails leaves the revision to the relay.
 */
@Injectable()
export class FeedbackService {
  constructor(
    private readonly reader: FindingsReader,
    @Inject(FEEDBACK_STORE) private readonly store: FeedbackStore,
    private readonly publisher: FeedbackTopicPublisher,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  /** `subject`: the verified token's (auth on), or undefined (auth off). */
  async submit(id: string, request: FeedbackRequest, auth: { on: boolean; subject: string | null }): Promise<FeedbackResponse> {
    let reviewer: string;
    if (auth.on) {
      if (request.reviewer !== undefined) throw new ResultsApiError('INVALID_ARGUMENT', 'reviewer is taken from the bearer token; do not send it');
      if (!auth.subject) throw new ResultsApiError('PERMISSION_DENIED', 'the token names no subject (sub, client_id or azp) to record as the reviewer');
      reviewer = auth.subject.slice(0, 256);
    } else {
      reviewer = request.reviewer ?? 'anonymous';
    }
    const { event: result } = await this.reader.get(id, request.modelVersion);
    if (result.status !== 'ok' || !result.model) throw new ResultsApiError('INVALID_ARGUMENT', 'the stored result is an error; there are no findings to review');
    if (!result.findings.some((f) => f.label === request.label)) {
      throw new ResultsApiError('INVALID_ARGUMENT', `label ${JSON.stringify(request.label)} is not one of the model's labels`);
    }
    const { feedback, changed } = await this.store.record({
      result,
      label: request.label,
      reviewer,
      verdict: request.verdict,
      comment: request.comment,
    });
    let published = feedback.publishedRevision >= feedback.event.revision;
    if (!published) {
      try {
        await this.publisher.publish([feedback.event]);
        published = true;
      } catch (error) {
        this.log.warn({ err: error, id, label: request.label, revision: feedback.event.revision }, 'feedback stored; publishing failed, the relay retries');
      }
    }
    this.log.info({ id, label: request.label, verdict: request.verdict, revision: feedback.event.revision, changed, published }, 'feedback recorded');
    return { feedback: feedback.event, published };
  }

  /** Every reviewer's current verdicts on the latest result of an image (or a model version's). */
  async list(id: string, modelVersion?: string): Promise<FeedbackEvent[]> {
    const { event } = await this.reader.get(id, modelVersion);
    if (!event.model) return [];
    return (await this.store.forResult(event.id, event.model.version)).map((f) => f.event);
  }
}
