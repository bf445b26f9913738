import { Controller, Get } from '@nestjs/common';
import { Public } from '@thorax/observability';
import { SERVICE_VERSION } from '../version';
import { openApiDocument } from './openapi.document';

/** GET /openapi.json: the OpenAPI 3.1 document of the HTTP API (public: it says how to authenticate). */
@Controller()
@Public()
export class OpenApiController {
  private readonly document = openApiDocument(SERVICE_VERSION);

  @Get('openapi.json')
  get(): Record<string, unknown> {
    return this.document;
  }
}
