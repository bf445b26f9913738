import { type ArgumentsHost, Catch, type ExceptionFilter, HttpStatus, Inject } from '@nestjs/common';
import { LOGGER, type Logger } from '@thorax/observability';
import type { Response } from 'express';
import { type ApiErrorCode, toApiError } from './api-error';

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
    if (error.code === 'INTERNAL' || error.code === 'UNAVAILABLE') this.log.error({ err: exception }, 'results API request failed');
    const res = host.switchToHttp().getResponse<Response>();
    res.status(HTTP_STATUS_OF[error.code]).json({ error: { code: error.code, message: error.message } });
  }
}
