import { Controller, Get, HttpCode, Param, Post, Query, Req, UseFilters } from '@nestjs/common';
import type { FeedbackEvent } from '@thorax/contracts';
import { principalOf, RequireScope } from '@thorax/observability';
import type { Request } from 'express';
import { ResultsApiError } from '../api/api-error';
import { ResultsApiErrorFilter } from '../api/api-error.filter';
import { type FeedbackResponse, FeedbackService, parseFeedbackBody } from './feedback.service';
import { readJsonBody } from './json-body';

/**
 * REST: reviewers' verdicts on a result (docs/review.md). The read scope is enough: reviewers are
 * the people who read results, and each verdict is signed with the token's subject.
 */
@Controller('v1/findings')
@UseFilters(ResultsApiErrorFilter)
@RequireScope('read')
export class FeedbackController {
  constructor(private readonly feedback: FeedbackService) {}

  @Post(':id/feedback')
  @HttpCode(200)
  async submit(@Param('id') id: string, @Req() req: Request): Promise<FeedbackResponse> {
    const principal = principalOf(req);
    const body = parseFeedbackBody(await readJsonBody(req));
    return this.feedback.submit(id, body, { on: principal !== undefined, subject: principal?.subject ?? null });
  }

  @Get(':id/feedback')
  async list(@Param('id') id: string, @Query('modelVersion') modelVersion?: unknown): Promise<{ feedback: FeedbackEvent[] }> {
    if (modelVersion !== undefined && typeof modelVersion !== 'string') throw new ResultsApiError('INVALID_ARGUMENT', 'modelVersion must be given once');
    return { feedback: await this.feedback.list(id, modelVersion) };
  }
}
