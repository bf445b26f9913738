import { Controller, Get, Param, Query, UseFilters } from '@nestjs/common';
import { ResultsApiError } from '../api/api-error';
import { ResultsApiErrorFilter } from '../api/api-error.filter';
import { type ReviewResult, ReviewService } from './review.service';
import type { WorklistStudy } from './worklist';

/** REST for the review page (read scope when auth is on): the worklist and one result's view. */
@Controller('v1/review')
@UseFilters(ResultsApiErrorFilter)
export class ReviewController {
  constructor(private readonly review: ReviewService) {}

  /** Recent studies, STAT first, then positives, then newest (`?limit=`, 1-200, default 50). */
  @Get('worklist')
  async worklist(@Query('limit') limit?: unknown): Promise<{ studies: WorklistStudy[] }> {
    let n = 50;
    if (limit !== undefined) {
      n = typeof limit === 'string' && /^\d{1,3}$/.test(limit) ? Number(limit) : NaN;
      if (!(n >= 1 && n <= 200)) throw new ResultsApiError('INVALID_ARGUMENT', 'limit must be an integer from 1 to 200');
    }
    return { studies: await this.review.worklist(n) };
  }

  @Get('results/:id')
  async result(@Param('id') id: string, @Query('modelVersion') modelVersion?: unknown): Promise<ReviewResult> {
    if (modelVersion !== undefined && typeof modelVersion !== 'string') throw new ResultsApiError('INVALID_ARGUMENT', 'modelVersion must be given once');
    return this.review.result(id, modelVersion);
  }
}
