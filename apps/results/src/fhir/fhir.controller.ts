import { type ArgumentsHost, Catch, Controller, type ExceptionFilter, Get, Inject, Param, Query, Req, Res, UseFilters } from '@nestjs/common';
import type { TokenVerifier } from '@thorax/auth';
import { API_AUTH, LOGGER, type Logger, Public } from '@thorax/observability';
import type { Request, Response } from 'express';
import { SERVICE_VERSION } from '../version';
import { capabilityStatement } from './capability-statement';
import { operationOutcome, toFhirError } from './fhir-error';
import { FhirService } from './fhir.service';

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

/** Every failure under /fhir as an OperationOutcome with its HTTP status. */
@Catch()
export class FhirErrorFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly log: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const error = toFhirError(exception);
    if (error.status >= 500) this.log.error({ err: exception }, 'FHIR request failed');
    host.switchToHttp().getResponse<Response>().status(error.status).type(FHIR_JSON).send(JSON.stringify(operationOutcome(error)));
  }
}

/**
 * FHIR R4 (read-only) under /fhir: metadata, read, search-type. With auth on, read and search need
 * the read scope; the CapabilityStatement stays public, as FHIR clients fetch it before they
 * authenticate (it holds no patient data).
 */
@Controller('fhir')
@UseFilters(FhirErrorFilter)
export class FhirController {
  private readonly started = new Date().toISOString();

  constructor(
    private readonly fhir: FhirService,
    @Inject(API_AUTH) private readonly auth: TokenVerifier | null,
  ) {}

  @Get('metadata')
  @Public()
  metadata(@Req() req: Request, @Res() res: Response): void {
    send(res, capabilityStatement(SERVICE_VERSION, this.baseUrl(req), this.started, this.auth?.scopeFor('read') ?? null));
  }

  @Get(':type')
  async search(@Param('type') type: string, @Query() query: Record<string, unknown>, @Req() req: Request, @Res() res: Response): Promise<void> {
    send(res, await this.fhir.search(type, query, this.baseUrl(req)));
  }

  @Get(':type/:id')
  async read(@Param('type') type: string, @Param('id') id: string, @Res() res: Response): Promise<void> {
    const { resource, version } = await this.fhir.read(type, id);
    if (version !== undefined) res.setHeader('ETag', `W/"${version}"`);
    if (resource.meta?.lastUpdated) res.setHeader('Last-Modified', new Date(resource.meta.lastUpdated).toUTCString());
    send(res, resource);
  }

  private baseUrl(req: Request): string {
    return this.fhir.options.baseUrl ?? `${req.protocol}://${req.get('host') ?? 'localhost'}/fhir`;
  }
}

function send(res: Response, body: unknown): void {
  res.status(200).type(FHIR_JSON).send(JSON.stringify(body));
}
