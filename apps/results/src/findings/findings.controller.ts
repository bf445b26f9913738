import { Controller, Get, Param, Query, UseFilters } from '@nestjs/common';
import type { FindingsEvent } from '@thorax/contracts';
import { ResultsApiError } from '../api/api-error';
import { ResultsApiErrorFilter } from '../api/api-error.filter';
import { FindingsReader } from './findings-reader.service';
import { contractOrder } from './findings.mapper';
import { listParamsFromHttp } from './list-params';

export interface FindingsListBody {
  /** thorax.findings.v1 events, newest first. */
  results: FindingsEvent[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

/** REST read API: GET /v1/findings/{id}, GET /v1/findings?… (read scope when auth is on). */
@Controller('v1/findings')
@UseFilters(ResultsApiErrorFilter)
export class FindingsController {
  constructor(private readonly reader: FindingsReader) {}

  @Get()
  async list(@Query() query: Record<string, unknown>): Promise<FindingsListBody> {
    const page = await this.reader.list(listParamsFromHttp(query));
    return { results: page.items.map((r) => contractOrder(r.event)), nextCursor: page.nextPageToken };
  }

  /** The latest stored event of the image (`?modelVersion=` for one model version's). */
  @Get(':id')
  async get(@Param('id') id: string, @Query('modelVersion') modelVersion?: unknown): Promise<FindingsEvent> {
    if (modelVersion !== undefined && typeof modelVersion !== 'string') {
      throw new ResultsApiError('INVALID_ARGUMENT', 'modelVersion must be given once');
    }
    return contractOrder((await this.reader.get(id, modelVersion)).event);
  }
}
