import {
  type ArgumentsHost,
  Catch,
  Controller,
  type ExceptionFilter,
  HttpCode,
  HttpException,
  Inject,
  Post,
  Query,
  Req,
  Res,
  UseFilters,
} from '@nestjs/common';
import { HEADERS } from '@thorax/contracts';
import { LOGGER, type Logger, principalOf } from '@thorax/observability';
import type { Request, Response } from 'express';
import { EdgeAudit } from '../audit/edge-audit';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { EdgeError, httpStatusOf, isEdgeCode, toEdgeError } from './edge-error';
import type { Submission } from './instance-submitter';
import { PredictService } from './predict.service';

/** Media types an edge upload may declare (sniffed when absent or application/octet-stream). */
const ACCEPTED_TYPES = new Set(['application/dicom', 'image/png', 'image/jpeg', 'application/octet-stream']);

/** Query parameters that may stand in for the contract's headers. */
interface UploadQuery {
  id?: string;
  study?: string;
  accession?: string;
  priority?: string;
  timeoutMs?: string;
}

/**
 * Every failure of these routes as `{ "error": { "code", "message" } }` with its HTTP status
 * (docs/error-codes.md, "HTTP and gRPC edges"); a refusal by the auth guard keeps its own body.
 */
@Catch()
export class EdgeErrorFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly log: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    if (exception instanceof HttpException) {
      res.status(exception.getStatus()).json(exception.getResponse());
      return;
    }
    const error = toEdgeError(exception);
    const status = httpStatusOf(error.code);
    if (status >= 500 && status !== 504) this.log.error({ err: exception, code: error.code }, 'ingest edge request failed');
    if (!res.headersSent) res.status(status).json({ error: { code: error.code, message: error.message } });
  }
}

/**
 * The HTTP edge of ingest (docs/contract.md, "HTTP and gRPC edges"): `POST /v1/studies` answers
 * 202 with the image id once Kafka acknowledged the record; `POST /v1/predict` answers with the
 * image's findings event once the pipeline produced it. The body is the raw file (DICOM, PNG or
 * JPEG), streamed: above INGEST_INLINE_MAX_BYTES it goes to the object store as it arrives.
 */
@Controller('v1')
@UseFilters(EdgeErrorFilter)
export class StudiesController {
  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    private readonly edge: PredictService,
    private readonly audit: EdgeAudit,
  ) {}

  @Post('studies')
  @HttpCode(202)
  async submit(@Req() req: Request, @Query() query: UploadQuery): Promise<{ id: string; sizeBytes: number; claimCheck: boolean }> {
    return this.audited(req, '/v1/studies', async () => {
      const submitted = await this.edge.submit(this.submission(req, query));
      return { status: 202, value: submitted };
    });
  }

  @Post('predict')
  async predict(@Req() req: Request, @Res() res: Response, @Query() query: UploadQuery): Promise<void> {
    const timeoutMs = query.timeoutMs === undefined ? undefined : Number(query.timeoutMs);
    await this.audited(req, '/v1/predict', async () => {
      if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0)) {
        throw new EdgeError('INVALID_ARGUMENT', 'timeoutMs must be a positive integer (milliseconds)');
      }
      const { event } = await this.edge.predict(this.submission(req, query), timeoutMs);
      const code = event.error?.code;
      const status = event.status === 'ok' ? 200 : code && isEdgeCode(code) ? httpStatusOf(code) : 500;
      res.status(status).json(event);
      return { status, value: undefined };
    });
  }

  /**
   * One audit line per request (who, from where, outcome; docs/pacs.md) and the edge instance
   * counter. An image counts as stored once Kafka acknowledged its record: for predict also when
   * its findings are an error event or arrive too late.
   */
  private async audited<T>(req: Request, route: string, work: () => Promise<{ status: number; value: T }>): Promise<T> {
    const startedAt = new Date();
    let status = 500;
    let stored = false;
    try {
      const done = await work();
      status = done.status;
      stored = true;
      return done.value;
    } catch (error) {
      const code = toEdgeError(error).code;
      status = httpStatusOf(code);
      stored = code === 'PREDICT_TIMEOUT';
      throw error;
    } finally {
      this.audit.instance('http', stored ? 'stored' : 'failed');
      this.audit.request({
        edge: 'http',
        route,
        client: req.socket.remoteAddress ?? '',
        subject: principalOf(req)?.subject ?? null,
        startedAt,
        endedAt: new Date(),
        instancesStored: stored ? 1 : 0,
        instancesFailed: stored ? 0 : 1,
        status,
        outcome: stored ? 'stored' : 'failed',
      });
    }
  }

  private submission(req: Request, query: UploadQuery): Submission {
    const declared = req.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
    if (declared && !ACCEPTED_TYPES.has(declared)) {
      throw new EdgeError('UNSUPPORTED_MEDIA_TYPE', `content-type ${declared} is not accepted: send application/dicom, image/png or image/jpeg`);
    }
    const length = Number(req.headers['content-length']);
    if (Number.isFinite(length) && length > this.config.INGEST_OBJECT_MAX_BYTES) {
      throw new EdgeError('PAYLOAD_TOO_LARGE', `${length} bytes exceeds ${this.config.INGEST_OBJECT_MAX_BYTES} (INGEST_OBJECT_MAX_BYTES)`);
    }
    const header = (name: string) => {
      const value = req.headers[name];
      return typeof value === 'string' && value.length > 0 ? value : undefined;
    };
    const headers: Record<string, string> = {};
    const put = (name: string, value: string | undefined) => {
      if (value !== undefined && value.length > 0) headers[name] = value;
    };
    put(HEADERS.studyUid, query.study ?? header(HEADERS.studyUid));
    put(HEADERS.accession, query.accession ?? header(HEADERS.accession));
    put(HEADERS.patientId, header(HEADERS.patientId));
    put(HEADERS.priority, query.priority ?? header(HEADERS.priority));
    put(HEADERS.traceparent, header(HEADERS.traceparent));
    put(HEADERS.tracestate, header(HEADERS.tracestate));
    const id = query.id ?? header('thorax-image-id');
    return {
      ...(id !== undefined ? { id } : {}),
      ...(declared && declared !== 'application/octet-stream' ? { contentType: declared } : {}),
      body: req,
      headers,
      source: 'http',
    };
  }
}
