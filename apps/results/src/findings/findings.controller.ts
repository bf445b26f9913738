import {
  type ArgumentsHost,
  Catch,
  Controller,
  type ExceptionFilter,
  Get,
  HttpStatus,
  Inject,
  Param,
  Query,
  UseFilters,
} from '@nestjs/common';
import type { FindingsEvent } from '@thorax/contracts';
import { LOGGER, type Logger } from '@thorax/observability';
import type { Response } from 'express';
import { type ApiErrorCode, ResultsApiError, toApiError } from './api-error';
import { FindingsReader } from './findings-reader.service';
import { contractOrder } from './findings.mapper';
import { listParamsFromHttp } from './list-params';

export const HTTP_STATUS_OF: Record<ApiErrorCode, number> = {
  NOT_FOUND: HttpStatus.NOT_FOUND,
  INVALID_ARGUMENT: HttpStatus.BAD_REQUEST,
  UNAUTHENTICATED: HttpStatus.UNAUTHORIZED,
  PERMISSION_DENIED: HttpStatus.FORBIDDEN,
  UNAVAILABLE: HttpStatus.SERVICE_UNAVAILABLE,
  INTERNAL: HttpStatus.INTERNAL_SERVER_ERROR,
};

/** Every failure of this API as `{ "error": { "code", "message" } }` with its HTTP status. */
@Catch()
export class ResultsApiErrorFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly log: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const error = toApiError(exception);
    if (error.code === 'INTERNAL' || error.code === 'UNAVAILABLE') this.log.error({ err: exception }, 'findings request failed');
    const res = host.switchToHttp().getResponse<Response>();
    res.status(HTTP_STATUS_OF[error.code]).json({ error: { code: error.code, message: error.message } });
  }
}

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
